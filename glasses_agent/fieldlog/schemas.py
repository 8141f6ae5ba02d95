"""The channels of a field log: one topic, one schema each, defined here and nowhere else.

Where a Foxglove well-known schema fits, the channel uses it (protobuf, from the
``foxglove-sdk`` package), so the file opens in Foxglove as it is: the camera
and the keyframes sent to the cloud (``foxglove.CompressedImage``), what
perception found drawn over the camera (``foxglove.ImageAnnotations``), the
microphone (``foxglove.RawAudio``), notices (``foxglove.Log``) and the phone
link's fix (``foxglove.LocationFix``). Everything else is JSON with a JSON
Schema of ours (``glasses_agent.*``); the runtime events' schemas are made from
their dataclasses (``event_schema``), so a new field cannot be forgotten here.
``docs/field-logs.md`` describes every channel; a test checks the two agree.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from dataclasses import dataclass
from typing import Any, Final

from glasses_agent.edge import events
from glasses_agent.edge.events import RuntimeEvent

__all__ = [
    "AUDIO",
    "CAMERA",
    "CAMERA_ANNOTATIONS",
    "CHANNELS",
    "EVENT_TOPICS",
    "FOXGLOVE_SCHEMAS",
    "HEARING_CONTROL",
    "HEARING_FRAMES",
    "KEYFRAME",
    "LOCATION",
    "LOG",
    "PERCEPTION",
    "PROTOCOL",
    "SESSION",
    "SESSION_END",
    "TTS",
    "VAD",
    "Channel",
    "event_schema",
    "event_topic",
    "json_schema",
]

# Bumped when a channel changes in a way an older reader would misread.
FORMAT_VERSION: Final = 1


@dataclass(frozen=True, slots=True)
class Channel:
    """One topic of a field log: its schema name and what it holds (for the docs)."""

    topic: str
    schema: str  # "foxglove.X" (protobuf, well-known) or "glasses_agent.X" (JSON Schema)
    about: str
    # Dropped first when the log nears its size budget (0), then (1); never (2).
    priority: int = 2


SESSION = Channel("/session", "glasses_agent.Session",
                  "one record at the start: version, command, configuration (secrets "
                  "masked), models, options, the notes kept, the wall-clock anchor")
SESSION_END = Channel("/session/end", "glasses_agent.SessionEnd",
                      "one record at a clean end: messages per topic, what was dropped")
CAMERA = Channel("/camera/image", "foxglove.CompressedImage",
                 "camera frames (JPEG, faces blurred unless opted out): every frame "
                 "perception ran on, and others at [fieldlog] camera_fps", priority=0)
CAMERA_ANNOTATIONS = Channel("/camera/annotations", "foxglove.ImageAnnotations",
                             "what perception found, drawn over the camera: text lines, "
                             "barcodes, faces (boxes only), the top label")
PERCEPTION = Channel("/perception", "glasses_agent.Perception",
                     "each perception: labels, centre labels, text, faces, barcodes, "
                     "timings per step, and the camera frame it was made from")
KEYFRAME = Channel("/cloud/keyframe", "foxglove.CompressedImage",
                   "each keyframe sent to the cloud, as it went (faces blurred)", priority=1)
AUDIO = Channel("/audio/mic", "foxglove.RawAudio",
                "what the listener heard (opt-in): 16 kHz mono pcm-s16, the echo of our "
                "own voice removed; timestamp = the audio's own time", priority=1)
VAD = Channel("/hearing/vad", "glasses_agent.VadProbability",
              "the VAD's speech probability per 32 ms (audio time)")
HEARING_FRAMES = Channel("/hearing/frames", "glasses_agent.ListenerFrame",
                         "what the listener said: speech started / paused / resumed / "
                         "ended, wake phrase, transcripts with words")
HEARING_CONTROL = Channel("/hearing/control", "glasses_agent.HearingControl",
                          "what changed the listener from outside: the wake gate armed "
                          "(follow-up, barge-in), buttons; replay applies them")
TTS = Channel("/tts", "glasses_agent.SpokenSentence",
              "each sentence queued on the speaker: synthesis time, length")
PROTOCOL = Channel("/protocol", "glasses_agent.WireMessage",
                   "every message to and from the gateway (tokens and resume handles "
                   "stripped; keyframes as their size, the image on /cloud/keyframe)")
LOG = Channel("/log", "foxglove.Log",
              "notices: the recording started, frames dropped for the size budget, ...")
LOCATION = Channel("/location", "foxglove.LocationFix",
                   "where the glasses were (the phone link's fix), when given")

_EVENTS: tuple[type[Any], ...] = (
    events.StateChanged, events.LedChanged, events.LinkChanged, events.Heard, events.Decided,
    events.AnswerText, events.Answered, events.BargedIn, events.TurnTimings)


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def event_topic(event: RuntimeEvent | type[Any]) -> str:
    """``/events/heard``, ``/events/turn_timings``, ... for an event or its class."""
    cls = event if isinstance(event, type) else type(event)
    return f"/events/{_snake(cls.__name__)}"


def _about(cls: type[Any]) -> str:
    """The first paragraph of a class's own docstring ("" for a dataclass's generated one)."""
    doc = cls.__doc__ or ""
    if doc.startswith(f"{cls.__name__}("):
        return ""
    return " ".join(doc.split("\n\n")[0].split())


EVENT_TOPICS: Final = {cls: Channel(event_topic(cls), f"glasses_agent.{cls.__name__}",
                                    _about(cls) or f"the runtime's {cls.__name__} events")
                       for cls in _EVENTS}

CHANNELS: Final[tuple[Channel, ...]] = (
    SESSION, SESSION_END, CAMERA, CAMERA_ANNOTATIONS, PERCEPTION, KEYFRAME, AUDIO, VAD,
    HEARING_FRAMES, HEARING_CONTROL, TTS, PROTOCOL, LOG, LOCATION, *EVENT_TOPICS.values(),
)
FOXGLOVE_SCHEMAS: Final = {c.schema for c in CHANNELS if c.schema.startswith("foxglove.")}


def _type_schema(annotation: Any) -> dict[str, Any]:
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return {"type": "string", "enum": [m.value for m in annotation]}
    if annotation is bool:
        return {"type": "boolean"}
    if annotation is int:
        return {"type": "integer"}
    if annotation is float:
        return {"type": "number"}
    if annotation is str:
        return {"type": "string"}
    if isinstance(annotation, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in typing.get_args(annotation)]}
    if annotation is type(None):
        return {"type": "null"}
    return {"type": "object"}


def event_schema(cls: type[Any]) -> dict[str, Any]:
    """The JSON Schema of a runtime event's record: its fields, by their types."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    return {
        "title": f"glasses_agent.{cls.__name__}",
        "description": _about(cls),
        "type": "object",
        "properties": {f.name: _type_schema(hints[f.name]) for f in fields},
        "required": [f.name for f in fields],
    }


_NUMBER: Final = {"type": "number"}
_STRING: Final = {"type": "string"}
_BOX: Final = {"type": "array", "items": {"type": "integer"}, "minItems": 4, "maxItems": 4}
_LABELS: Final = {"type": "array", "items": {
    "type": "object", "properties": {"name": _STRING, "score": _NUMBER}}}


def _object(title: str, description: str, properties: dict[str, Any],
            required: list[str] | None = None) -> dict[str, Any]:
    return {"title": title, "description": description, "type": "object",
            "properties": properties, "required": required or list(properties)}


_SCHEMAS: Final[dict[str, dict[str, Any]]] = {
    "glasses_agent.Session": _object(
        "glasses_agent.Session", SESSION.about, {
            "format": {"type": "integer"}, "version": _STRING, "command": _STRING,
            "started_at": {"type": "string", "format": "date-time"},
            "wall_ns": {"type": "integer"}, "clock_s": _NUMBER,
            "config": {"type": "object"}, "models": {"type": "object"},
            "options": {"type": "object"}, "notes": {"type": "array"},
            "camera": {"type": "boolean"}, "cloud": {"type": "boolean"},
            "record": {"type": "object"},
        }),
    "glasses_agent.SessionEnd": _object(
        "glasses_agent.SessionEnd", SESSION_END.about, {
            "messages": {"type": "object"}, "dropped": {"type": "object"},
            "bytes": {"type": "integer"}, "budget_bytes": {"type": "integer"},
        }),
    "glasses_agent.Perception": _object(
        "glasses_agent.Perception", PERCEPTION.about, {
            "timestamp_s": _NUMBER, "frame_index": {"type": "integer"},
            "image_log_time_ns": {"type": "integer"},
            "labels": _LABELS, "center_labels": _LABELS,
            "text": {"type": "array", "items": {"type": "object", "properties": {
                "text": _STRING, "score": _NUMBER, "box": _BOX}}},
            "faces": {"type": "array", "items": _BOX},
            "barcodes": {"type": "array", "items": {"type": "object", "properties": {
                "type": _STRING, "data": _STRING, "box": _BOX}}},
            "timings_ms": {"type": "object"}, "extra": {"type": "object"},
        }),
    "glasses_agent.VadProbability": _object(
        "glasses_agent.VadProbability", VAD.about, {"start_s": _NUMBER, "probability": _NUMBER}),
    "glasses_agent.ListenerFrame": _object(
        "glasses_agent.ListenerFrame", HEARING_FRAMES.about, {
            "kind": {"type": "string", "enum": ["speech_started", "speech_paused",
                                                 "speech_resumed", "speech_ended", "wake",
                                                 "transcript", "utterance", "other"]},
            "audio_s": _NUMBER, "wall_s": _NUMBER, "timestamp_s": _NUMBER,
            "start_s": _NUMBER, "end_s": _NUMBER, "text": _STRING,
            "words": {"type": "array"}, "phrase": _STRING, "score": _NUMBER,
            "asr_ms": _NUMBER, "language": _STRING,
            "revises": {"type": "boolean", "description": "transcript: the whole turn again, "
                        "replacing the one before it (the wearer went on after a pause)"},
        }, required=["kind", "audio_s", "wall_s"]),
    "glasses_agent.HearingControl": _object(
        "glasses_agent.HearingControl", HEARING_CONTROL.about, {
            "kind": {"type": "string", "enum": ["armed", "button"]},
            "audio_s": _NUMBER,
            "until_audio_s": {"anyOf": [_NUMBER, {"type": "null"}],
                              "description": "armed: until this audio time (null: always)"},
            "button": _STRING,
        }, required=["kind", "audio_s"]),
    "glasses_agent.SpokenSentence": _object(
        "glasses_agent.SpokenSentence", TTS.about, {
            "timestamp_s": _NUMBER, "text": _STRING, "synth_ms": _NUMBER, "duration_s": _NUMBER}),
    "glasses_agent.WireMessage": _object(
        "glasses_agent.WireMessage", PROTOCOL.about, {
            "direction": {"type": "string", "enum": ["sent", "received"]},
            "timestamp_s": _NUMBER, "type": _STRING, "bytes": {"type": "integer"},
            "message": {"type": "object"},
        }),
}


def json_schema(channel: Channel) -> dict[str, Any]:
    """The JSON Schema of one of our channels (not of a Foxglove one)."""
    for cls, event_channel in EVENT_TOPICS.items():
        if event_channel is channel:
            return event_schema(cls)
    return _SCHEMAS[channel.schema]
