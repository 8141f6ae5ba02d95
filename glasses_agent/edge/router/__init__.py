"""The on-device router: pure policy that answers on the glasses what it can.

``route(query, now=..., device=..., config=..., keyframes=...)`` returns a
``Decision`` (local reply, or escalate / contemplate with facts and a
keyframe); ``offline_fallback`` is the best on-device answer when the cloud
does not answer. No clock, no I/O: time and state are arguments. What the
glasses answer themselves is a list of skills (``router.skills.SKILLS``).
"""

from glasses_agent.edge.router.decision import Action, Decision, DeviceStatus, Keyframe, Kind, Note
from glasses_agent.edge.router.facts import facts_from_perception
from glasses_agent.edge.router.language import is_visual, normalize
from glasses_agent.edge.router.policy import offline_fallback, route
from glasses_agent.edge.router.skills import SKILLS, Answer, Context, Skill, classify, skill_named

__all__ = [
    "SKILLS",
    "Action",
    "Answer",
    "Context",
    "Decision",
    "DeviceStatus",
    "Keyframe",
    "Kind",
    "Note",
    "Skill",
    "classify",
    "facts_from_perception",
    "is_visual",
    "normalize",
    "offline_fallback",
    "route",
    "skill_named",
]
