"""The on-device router: pure policy that answers on the glasses what it can.

``route(query, now=..., device=..., config=..., keyframes=...)`` returns a
``Decision`` (local reply, or escalate / contemplate with facts and a
keyframe); ``offline_fallback`` is the best on-device answer when the cloud
does not answer. No clock, no I/O: time and state are arguments.
"""

from glasses_agent.router.intents import Intent, classify, is_visual, normalize
from glasses_agent.router.policy import (
    Decision,
    DeviceStatus,
    Keyframe,
    Note,
    facts_from_perception,
    offline_fallback,
    pick_keyframe,
    route,
)

__all__ = [
    "Decision",
    "DeviceStatus",
    "Intent",
    "Keyframe",
    "Note",
    "classify",
    "facts_from_perception",
    "is_visual",
    "normalize",
    "offline_fallback",
    "pick_keyframe",
    "route",
]
