"""What the router decides with, and what it decides: plain frozen records.

``DeviceStatus`` and ``Keyframe`` come in from the runtime; ``Decision`` goes out,
with a ``Note`` when the wearer asked the glasses to remember something.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from glasses_agent.frames import LinkState
from glasses_agent.protocol import Facts

__all__ = ["Action", "Decision", "DeviceStatus", "Keyframe", "Kind", "Note"]

Kind = Literal["local", "escalate", "contemplate"]
Action = Literal["privacy_on", "privacy_off", "remember"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Keyframe:
    """A candidate image for the cloud: JPEG bytes (bystander faces already blurred), or
    empty when the runtime makes the JPEG only for the candidate chosen (``index``: the
    camera frame it stands for)."""

    timestamp_s: float
    jpeg: bytes = field(repr=False, default=b"")
    sharpness: float = 0.0
    index: int = -1


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """Something the wearer asked the glasses to remember, kept on the device.

    ``facts``: what the camera saw then (text read, labels), so that "where did I
    park?" can answer "the sign read Level 3 B"; ``location`` when the wearer allows it.
    """

    text: str
    timestamp: datetime
    facts: Facts = field(default_factory=Facts)
    location: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """What the glasses know about themselves, passed in by the runtime."""

    battery_percent: float | None = None
    charging: bool = False
    # The cloud link as the cloud client sees it.
    link: LinkState = LinkState.CONNECTED
    privacy: bool = False
    # Role -> model name, e.g. {"speech": "Whisper tiny.en", "vision": "EfficientNet-Lite0 int8"}.
    models: Mapping[str, str] = field(default_factory=dict)
    # What the wearer asked to remember, oldest first (kept by the runtime).
    notes: Sequence[Note] = ()
    # Where the glasses are (the phone link's fix), when the wearer allows it.
    location: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do with one query.

    ``kind``: ``local`` (speak ``reply``), ``escalate`` or ``contemplate`` (send
    ``facts`` and ``keyframe`` to the cloud). ``rule`` names the rule that
    decided and ``reason`` says why, for the log. ``offline``: a local answer
    given because the cloud could not be reached. ``action``: a state change
    the runtime carries out (privacy on/off, keep ``note``).
    """

    query_id: str
    kind: Kind
    rule: str
    reason: str
    reply: str = ""
    facts: Facts = field(default_factory=Facts)
    keyframe: Keyframe | None = None
    action: Action | None = None
    offline: bool = False
    # With action "remember": the note for the runtime to keep.
    note: Note | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"
