"""The privacy switch by voice, and its state: "turn off the camera", "camera on",
"is the camera on?" (a question about the camera asks for its state and never
switches it)."""

from __future__ import annotations

import re

from glasses_agent.edge.router.language import anywhere, whole
from glasses_agent.edge.router.skills.base import Answer, Context, Skill

__all__ = ["PRIVACY_OFF", "PRIVACY_ON", "PRIVACY_STATUS"]


def _status(ctx: Context) -> Answer:
    if ctx.device.privacy:
        reply = "Privacy mode is on: the camera is off. Say 'camera on' to turn it back on."
    else:
        reply = "The camera is on; privacy mode is off. Say 'privacy on' to turn the camera off."
    return Answer(rule="privacy_status", reply=reply, reason="asked about the camera's state")


def _on(ctx: Context) -> Answer:
    return Answer(rule="privacy_on", reply="Privacy mode on. The camera is off.",
                  reason="asked to turn the camera off", action="privacy_on")


def _off(ctx: Context) -> Answer:
    return Answer(rule="privacy_off", reply="Camera on. Privacy mode off.",
                  reason="asked to turn the camera on", action="privacy_off")


# A question about the camera or privacy ("is the camera on?", "what is privacy mode").
PRIVACY_STATUS = Skill(name="privacy_status", answer=_status, patterns=(re.compile(
    r"^(?:is|are|am|was|were|what|what's|whats|how|how's|why|does|do|did|when)\b"
    r".*\b(?:camera|privacy)\b"
),))
# "turn off privacy mode" is privacy off before "privacy mode" is privacy on.
PRIVACY_OFF = Skill(name="privacy_off", answer=_off, patterns=(anywhere(
    r"privacy(?: mode)? off|(?:turn|switch) off privacy(?: mode)?|"
    r"(?:exit|leave|end|stop|disable|cancel) privacy(?: mode)?|"
    r"(?:turn|switch) (?:the )?camera (?:back )?on|(?:turn|switch) (?:back )?on (?:the )?camera|"
    r"camera (?:back )?on|enable (?:the )?camera"
),))
PRIVACY_ON = Skill(name="privacy_on", answer=_on, patterns=(
    anywhere(
        r"privacy mode|privacy on|(?:turn|switch) on privacy|enable privacy|go private|"
        r"(?:turn|switch) (?:the )?camera off|(?:turn|switch) off (?:the )?camera|camera off|"
        r"disable (?:the )?camera"
    ),
    # Only as the whole request: "stop recording my voice memo" is not about the camera.
    whole(r"stop (?:looking|watching|recording|filming)(?: me)?"),
))
