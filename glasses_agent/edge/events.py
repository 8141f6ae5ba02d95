"""What the running glasses tell the world: the runtime's events.

The runtime (``glasses_agent.edge.runtime``) publishes one of these for
everything a watcher may show or keep: its state (idle, listening, thinking,
speaking, offline), the capture LED, the cloud link, what was heard, what the
camera saw, each routing decision with its reason, the answer as it streams,
a barge-in, and one latency record per turn. The simulator's window and HUD,
the field-log recorder and ``glasses-agent run --events`` all read the same
events; none of them reaches into the runtime.

``Tap`` is the rest of what a field log keeps (``glasses_agent.fieldlog`` implements
it): what the glasses sensed and said on the way to those events, camera frames, the
audio the listener heard, VAD and transcript frames, spoken sentences, wire messages.
``build_runtime(tap=...)`` hands it to each part; the edge never imports a recorder.

Times are the runtime clock's (``timestamp_s``); ``as_dict`` gives plain JSON data.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from glasses_agent.frames import AudioChunk, Frame, LinkState, Perception, VideoFrame

__all__ = [
    "Answered",
    "AnswerText",
    "AssistantState",
    "BargedIn",
    "Decided",
    "Heard",
    "LedChanged",
    "LinkChanged",
    "Perceived",
    "RuntimeEvent",
    "StateChanged",
    "Tap",
    "TurnTimings",
    "event_dict",
]


class AssistantState(enum.StrEnum):
    IDLE = "idle"
    LISTENING = "listening"  # the wearer is talking to us
    THINKING = "thinking"  # a question is being answered (on the device or in the cloud)
    SPEAKING = "speaking"
    OFFLINE = "offline"  # idle, and the cloud cannot be reached


@dataclass(frozen=True, slots=True, kw_only=True)
class StateChanged:
    timestamp_s: float
    state: AssistantState


@dataclass(frozen=True, slots=True, kw_only=True)
class LedChanged:
    """The capture LED: on exactly while camera frames may be kept or sent."""

    timestamp_s: float
    on: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkChanged:
    timestamp_s: float
    link: LinkState


@dataclass(frozen=True, slots=True, kw_only=True)
class Heard:
    """A turn meant for the assistant, transcribed: ``text`` as heard, ``question`` without
    the wake phrase; ``start_s``/``end_s`` the speech on the runtime clock. ``revises``:
    the wearer went on after a pause taken for the end of the turn; this is the whole
    turn again, and the turn heard before it (its answer, a note it kept) is dropped."""

    timestamp_s: float
    query_id: str
    text: str
    question: str
    start_s: float
    end_s: float
    revises: bool = False


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Perceived:
    """What the camera showed (for overlays: boxes, labels, faces as they leave: blurred)."""

    timestamp_s: float
    perception: Perception


@dataclass(frozen=True, slots=True, kw_only=True)
class Decided:
    """The router's decision for a question, with its rule and reason."""

    timestamp_s: float
    query_id: str
    question: str
    kind: str  # local, escalate, contemplate
    rule: str
    reason: str
    offline: bool = False
    keyframe_bytes: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerText:
    """More of the answer, as it streams (``offset``: characters before it)."""

    timestamp_s: float
    query_id: str
    text: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Answered:
    """The end of an answer. ``route``: ``device``, ``cloud`` or ``offline`` (an on-device
    fallback because the cloud could not answer); ``heard_chars``: how much was spoken."""

    timestamp_s: float
    query_id: str
    text: str
    route: str
    rule: str
    cancelled: bool = False
    heard_chars: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class BargedIn:
    """The wearer spoke over the answer: playback went silent ``stop_ms`` after their
    speech began (its start from the VAD; silent from the hold on its first chunk),
    having played ``heard_chars`` characters."""

    timestamp_s: float
    query_id: str
    speech_start_s: float
    heard_chars: int
    stop_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnTimings:
    """One turn's latency, each stage from the end of the wearer's speech (ms), as the
    wearer waits it. ``first_token``/``first_audio``: 0 when there were none."""

    query_id: str
    end_of_speech_s: float
    route: str
    asr_ms: float
    perception_ms: float
    route_ms: float
    first_token_ms: float
    first_audio_ms: float
    total_ms: float


RuntimeEvent = (
    StateChanged | LedChanged | LinkChanged | Heard | Perceived | Decided | AnswerText
    | Answered | BargedIn | TurnTimings
)


class Tap(Protocol):
    """What a field-log recorder is told, besides the events. Each method is called on the
    part's own thread (camera capture, perception, hearing, the event loop): it must
    return at once (queue, do not encode images here) and must not raise."""

    def session(self, info: Mapping[str, Any]) -> None:
        """The run begins: models, options, notes kept, ``clock_s`` (the runtime clock now)."""

    def event(self, event: RuntimeEvent) -> None:
        """Every runtime event, as ``on_event`` gets it."""

    def camera_frame(self, frame: VideoFrame) -> None:
        """Every frame the capture publishes (the recorder keeps some)."""

    def perceived(self, perception: Perception, frame: VideoFrame) -> None:
        """A perception and the very frame it was made from."""

    def heard_audio(self, chunk: AudioChunk) -> None:
        """The audio the listener hears (after the echo canceller), in order."""

    def vad(self, start_s: float, probability: float) -> None:
        """The VAD's speech probability for the 32 ms from ``start_s`` (audio time)."""

    def listener_frame(self, frame: Frame, audio_s: float, wall_s: float) -> None:
        """A frame out of the listener: speech started/paused/resumed/ended, wake, transcript."""

    def hearing_control(self, kind: Literal["armed", "button"], audio_s: float,
                        value: float | str) -> None:
        """What changed the listener from outside, at audio time ``audio_s``: the wake gate
        ``armed`` until audio time ``value`` (a follow-up, a barge-in), a ``button``."""

    def spoken(self, text: str, now_s: float, synth_ms: float, duration_s: float) -> None:
        """A sentence queued on the speaker at ``now_s``: its synthesis time and length."""

    def wire(self, direction: Literal["sent", "received"], data: str | bytes,
             now_s: float) -> None:
        """A websocket message to or from the gateway, as it went over the wire."""


def event_dict(event: RuntimeEvent) -> dict[str, Any]:
    """``{"event": "heard", ...fields}``, JSON-ready (a perception as its counts and labels)."""
    name = "".join("_" + c.lower() if c.isupper() else c for c in type(event).__name__)[1:]
    out: dict[str, Any] = {"event": name}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        if isinstance(value, Perception):
            value = {
                "labels": [[x.name, x.score] for x in value.labels[:3]],
                "center_labels": [[x.name, x.score] for x in value.center_labels[:3]],
                "text": [t.text for t in value.text],
                "faces": len(value.faces),
                "barcodes": [[b.type, b.data] for b in value.barcodes],
            }
        elif isinstance(value, enum.Enum):
            value = value.value
        elif isinstance(value, float):
            value = round(value, 4)
        out[field.name] = value
    return out
