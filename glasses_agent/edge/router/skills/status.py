"""The glasses' own state: battery, the cloud link, privacy, the models in use."""

from __future__ import annotations

from glasses_agent.edge.router.language import anywhere, whole
from glasses_agent.edge.router.skills.base import Answer, Context, Skill
from glasses_agent.frames import LinkState

__all__ = ["DEVICE_STATUS"]

_LINK = {
    LinkState.CONNECTED: "Connected to the cloud.",
    LinkState.RECONNECTING: "Connecting to the cloud.",
    LinkState.OFFLINE: "Offline: answering on the glasses only.",
}


def _status(ctx: Context) -> Answer:
    device = ctx.device
    parts = []
    if device.battery_percent is not None:
        charging = ", charging" if device.charging else ""
        parts.append(f"Battery {round(device.battery_percent)} percent{charging}.")
    parts.append(_LINK[device.link])
    if device.privacy:
        parts.append("Privacy mode is on.")
    if device.models:
        parts.append("Models: " + ", ".join(f"{role} {name}" for role, name in
                                            device.models.items()) + ".")
    return Answer(rule="device_status", reply=" ".join(parts),
                  reason="device state is known on the device")


# "status" alone, never "the status of my flight"; "the battery" alone, never "the battery
# life of this phone".
DEVICE_STATUS = Skill(name="device_status", answer=_status, patterns=(
    anywhere(
        r"how much battery|battery left|(?:my|your) battery|charge level|how much charge|"
        r"(?:am i|are you) charging|(?:are|am) (?:you|we|i) (?:online|connected|offline)|"
        r"(?:connection|link|network|device|system|glasses) (?:status|state)|"
        r"(?:which|what) models? (?:are you|do you|are|is it|is this)(?: using| use| running)?|"
        r"your models"
    ),
    whole(
        r"status(?: report| update)?|(?:what's|what is|whats) (?:the |your )?status|"
        r"(?:(?:what's|what is|whats|how's|how is|check) )?(?:the )?battery"
        r"(?: level| status| life| percentage)?"
    ),
))
