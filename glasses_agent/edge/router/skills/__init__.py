"""The on-device skills, in the order they are tried: the first whose pattern matches
a question names its intent (anything else is ``other``: for the cloud).

To add a skill: write ``skills/<name>.py`` with its ``Skill`` (patterns and an
``answer``), and add it to ``SKILLS`` below, before any skill whose patterns would
also match its questions. docs/architecture.md walks through an example.
"""

from __future__ import annotations

from glasses_agent.edge.router.language import normalize
from glasses_agent.edge.router.skills.base import Answer, Context, Skill
from glasses_agent.edge.router.skills.camera import BARCODE, IDENTIFY, PRICE, READ_TEXT
from glasses_agent.edge.router.skills.clock import DATE, TIME
from glasses_agent.edge.router.skills.control import STOP
from glasses_agent.edge.router.skills.notes import RECALL, REMEMBER
from glasses_agent.edge.router.skills.privacy import PRIVACY_OFF, PRIVACY_ON, PRIVACY_STATUS
from glasses_agent.edge.router.skills.status import DEVICE_STATUS

__all__ = ["SKILLS", "Answer", "Context", "Skill", "classify", "skill_named"]

# First match wins: a question about the camera is privacy_status before any switch;
# "turn off privacy mode" is privacy_off before "privacy mode" is privacy_on.
SKILLS: tuple[Skill, ...] = (
    REMEMBER,
    RECALL,
    STOP,
    PRIVACY_STATUS,
    PRIVACY_OFF,
    PRIVACY_ON,
    TIME,
    DATE,
    DEVICE_STATUS,
    BARCODE,
    PRICE,
    READ_TEXT,
    IDENTIFY,
)
_BY_NAME = {skill.name: skill for skill in SKILLS}


def classify(text: str) -> str:
    """The intent of one transcript: a skill's name, or ``other`` (for the cloud)."""
    normalized = normalize(text)
    if normalized:
        for skill in SKILLS:
            if skill.matches(normalized):
                return skill.name
    return "other"


def skill_named(intent: str) -> Skill | None:
    return _BY_NAME.get(intent)
