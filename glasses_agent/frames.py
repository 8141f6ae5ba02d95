"""Everything in motion through the runtime is a small frozen dataclass.

Frames carry units in their field names (``timestamp_s``, ``sample_rate_hz``).
They are internal: the wire protocol (``glasses_agent.protocol``) has its own
messages. A frame holding a numpy array compares by identity (``eq=False``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "AudioChunk",
    "Barcode",
    "ButtonPressed",
    "Frame",
    "Label",
    "LinkState",
    "Perception",
    "Query",
    "ReplyCancelled",
    "ReplyDelta",
    "ReplyDone",
    "SpeechEnded",
    "SpeechPaused",
    "SpeechResumed",
    "SpeechStarted",
    "TextLine",
    "Transcript",
    "Utterance",
    "VideoFrame",
    "WakeDetected",
    "Word",
]

FloatArray = npt.NDArray[np.float32]
UInt8Array = npt.NDArray[np.uint8]


class LinkState(enum.Enum):
    """The cloud link, as the edge client sees it (one vocabulary for the client, the
    router's device status and the HUD): ``reconnecting`` while a connection is being
    made, ``offline`` after an attempt failed or the gateway refused the device."""

    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    OFFLINE = "offline"


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class AudioChunk:
    """Mono float32 PCM in [-1, 1]; ``timestamp_s`` is the time of the first sample."""

    timestamp_s: float
    samples: FloatArray
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        return len(self.samples) / self.sample_rate_hz


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class VideoFrame:
    """One camera image, BGR uint8 (OpenCV order), taken at ``timestamp_s``."""

    timestamp_s: float
    image_bgr: UInt8Array
    index: int
    source: str = ""

    @property
    def size_px(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return (int(self.image_bgr.shape[1]), int(self.image_bgr.shape[0]))


@dataclass(frozen=True, slots=True, kw_only=True)
class ButtonPressed:
    """A temple tap (``tap``), a long press, or a simulator key."""

    timestamp_s: float
    button: Literal["tap", "long_press", "photo", "privacy"] = "tap"


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechStarted:
    timestamp_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechEnded:
    timestamp_s: float
    start_s: float


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class SpeechPaused:
    """Silence began inside speech at ``timestamp_s`` (the end of the speech so far): maybe
    the end of the turn, not yet decided. ``utterance`` is what would be handed on if the
    turn ended here (pre-roll, the speech, the audio after it so far)."""

    timestamp_s: float
    start_s: float
    utterance: Utterance


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeechResumed:
    """Speech came back at ``timestamp_s`` after a ``SpeechPaused``: the turn goes on."""

    timestamp_s: float
    start_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class WakeDetected:
    timestamp_s: float
    phrase: str
    score: float


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Utterance:
    """The audio of one utterance (pre-roll included), ready for recognition."""

    start_s: float
    end_s: float
    samples: FloatArray
    sample_rate_hz: int
    trigger: Literal["vad", "wake", "button", "file"] = "vad"


@dataclass(frozen=True, slots=True, kw_only=True)
class Word:
    text: str
    start_s: float
    end_s: float
    probability: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Transcript:
    """The final text of one utterance. ``asr_ms``: end of speech to final text.

    ``revises``: the wearer went on after an earlier transcript of this turn had been
    handed on (a pause taken for its end); this one is the whole turn again and
    replaces that one (whose answer should be dropped).
    """

    text: str
    start_s: float
    end_s: float
    words: tuple[Word, ...] = ()
    language: str = "en"
    asr_ms: float = 0.0
    revises: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Label:
    name: str
    score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class TextLine:
    """A line of text read in a frame; ``box`` is (x0, y0, x1, y1) in pixels."""

    text: str
    score: float
    box: tuple[int, int, int, int]


@dataclass(frozen=True, slots=True, kw_only=True)
class Barcode:
    type: str
    data: str
    box: tuple[int, int, int, int] = (0, 0, 0, 0)


@dataclass(frozen=True, slots=True, kw_only=True)
class Perception:
    """What the camera showed at ``timestamp_s``."""

    timestamp_s: float
    labels: tuple[Label, ...] = ()
    center_labels: tuple[Label, ...] = ()
    text: tuple[TextLine, ...] = ()
    faces: tuple[tuple[int, int, int, int], ...] = ()
    barcodes: tuple[Barcode, ...] = ()
    timings_ms: dict[str, float] = field(default_factory=dict)
    # What steps added later found: name -> one short line (it travels as Facts.extra).
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class Query:
    """A question for the router (and perhaps the cloud)."""

    query_id: str
    text: str
    timestamp_s: float
    perception: Perception | None = None
    keyframes_jpeg: tuple[bytes, ...] = ()
    contemplate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyDelta:
    query_id: str
    text: str
    timestamp_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyDone:
    query_id: str
    text: str
    timestamp_s: float
    source: Literal["device", "cloud", "offline"] = "cloud"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplyCancelled:
    """Barge-in: the only signal that flows backwards."""

    query_id: str
    timestamp_s: float
    heard_chars: int = 0


Frame = (
    AudioChunk
    | VideoFrame
    | ButtonPressed
    | SpeechStarted
    | SpeechEnded
    | SpeechPaused
    | SpeechResumed
    | WakeDetected
    | Utterance
    | Transcript
    | Perception
    | Query
    | ReplyDelta
    | ReplyDone
    | ReplyCancelled
)
