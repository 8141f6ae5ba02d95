"""What each record of a field log holds: the runtime's frames and events as plain data.

Pure functions (no file, no clock): a frame or an event in, a JSON-ready dict or
an encoded Foxglove message out. ``wire_record`` is where tokens are stripped:
the hello's device token and every resume handle are removed before a protocol
message reaches the log, so a field log can be shared without giving anyone
the device's credentials.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from typing import Any, Final

import numpy as np

from glasses_agent import frames
from glasses_agent.edge.events import RuntimeEvent
from glasses_agent.frames import AudioChunk, Frame, Perception, Utterance

__all__ = [
    "SECRET_FIELDS",
    "annotations_message",
    "audio_message",
    "event_record",
    "image_message",
    "listener_record",
    "pcm_s16",
    "perception_record",
    "wire_record",
]

# Fields of protocol messages that are credentials: never written to a log.
SECRET_FIELDS: Final = frozenset({"token", "resume", "resume_handle"})
_KINDS: Final = {frames.SpeechStarted: "speech_started", frames.SpeechPaused: "speech_paused",
                 frames.SpeechResumed: "speech_resumed", frames.SpeechEnded: "speech_ended",
                 frames.WakeDetected: "wake", frames.Transcript: "transcript",
                 Utterance: "utterance"}


def _timestamp(ns: int) -> Any:
    from foxglove.messages import Timestamp

    return Timestamp(ns // 1_000_000_000, ns % 1_000_000_000)


def event_record(event: RuntimeEvent) -> dict[str, Any]:
    """An event's fields (enums by value), as its ``/events/...`` channel holds it."""
    out: dict[str, Any] = {}
    for field in dataclasses.fields(event):
        value = getattr(event, field.name)
        out[field.name] = value.value if isinstance(value, enum.Enum) else value
    return out


def perception_record(perception: Perception, *, frame_index: int,
                      image_log_time_ns: int) -> dict[str, Any]:
    """Everything a perception found, and which camera frame (on ``/camera/image``) it saw."""
    return {
        "timestamp_s": perception.timestamp_s, "frame_index": frame_index,
        "image_log_time_ns": image_log_time_ns,
        "labels": [{"name": x.name, "score": round(x.score, 4)} for x in perception.labels],
        "center_labels": [{"name": x.name, "score": round(x.score, 4)}
                          for x in perception.center_labels],
        "text": [{"text": t.text, "score": round(t.score, 4), "box": list(t.box)}
                 for t in perception.text],
        "faces": [list(f) for f in perception.faces],
        "barcodes": [{"type": b.type, "data": b.data, "box": list(b.box)}
                     for b in perception.barcodes],
        "timings_ms": {k: round(v, 2) for k, v in perception.timings_ms.items()},
        "extra": dict(perception.extra),
    }


def listener_record(frame: Frame, audio_s: float, wall_s: float) -> dict[str, Any]:
    """A frame out of the listener (no audio samples: those are on ``/audio/mic``)."""
    out: dict[str, Any] = {"kind": _KINDS.get(type(frame), "other"), "audio_s": audio_s,
                           "wall_s": wall_s}
    for field in dataclasses.fields(frame):
        value = getattr(frame, field.name)
        if isinstance(value, np.ndarray) or isinstance(value, Utterance):
            continue
        if field.name == "words":
            value = [{"text": w.text, "start_s": w.start_s, "end_s": w.end_s,
                      "probability": round(w.probability, 4)} for w in value]
        out[field.name] = value
    return out


def _stripped(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _stripped(v) for k, v in value.items() if k not in SECRET_FIELDS}
    if isinstance(value, list):
        return [_stripped(v) for v in value]
    return value


def wire_record(direction: str, data: str | bytes, now_s: float) -> dict[str, Any]:
    """A protocol message as the log keeps it: JSON with the credentials taken out; a
    binary message (a keyframe) as its header fields and size."""
    if isinstance(data, str):
        try:
            message = json.loads(data)
        except ValueError:
            message = {"unreadable": True}
        if not isinstance(message, dict):
            message = {"unreadable": True}
        message = _stripped(message)
        kind = str(message.get("type", "?"))
        size = len(data.encode("utf-8"))
    else:
        message, kind, size = _binary_fields(bytes(data)), "keyframe", len(data)
    return {"direction": direction, "timestamp_s": now_s, "type": kind, "bytes": size,
            "message": message}


def _binary_fields(data: bytes) -> dict[str, Any]:
    from glasses_agent.protocol import BINARY_HEADER

    if len(data) < BINARY_HEADER.size:
        return {"unreadable": True}
    _, version, kind, seq, index, _, id_len = BINARY_HEADER.unpack_from(data)
    query_id = data[BINARY_HEADER.size:BINARY_HEADER.size + id_len].decode("utf-8", "replace")
    return {"version": version, "kind": kind, "seq": seq, "index": index,
            "query_id": query_id, "jpeg_bytes": len(data) - BINARY_HEADER.size - id_len}


def keyframe_jpeg(data: bytes) -> bytes | None:
    """The JPEG inside a binary keyframe message (None if it is not one)."""
    from glasses_agent.protocol import BINARY_HEADER

    if len(data) < BINARY_HEADER.size:
        return None
    id_len = BINARY_HEADER.unpack_from(data)[-1]
    jpeg = data[BINARY_HEADER.size + id_len:]
    return jpeg if jpeg.startswith(b"\xff\xd8") else None


def image_message(jpeg: bytes, log_time_ns: int, frame_id: str) -> bytes:
    """A ``foxglove.CompressedImage`` of a JPEG."""
    from foxglove.messages import CompressedImage

    return bytes(CompressedImage(timestamp=_timestamp(log_time_ns), frame_id=frame_id,
                                 data=jpeg, format="jpeg").encode())


def pcm_s16(samples: np.ndarray) -> bytes:
    """Float samples in [-1, 1] as 16-bit PCM: x 32768, rounded, clipped (a 16-bit source
    comes back exactly, as the audio sources scale it)."""
    scaled = np.clip(np.rint(np.asarray(samples, dtype=np.float64) * 32768.0), -32768, 32767)
    return scaled.astype("<i2").tobytes()


def audio_message(chunk: AudioChunk) -> bytes:
    """A ``foxglove.RawAudio`` block; its ``timestamp`` is the audio's own time."""
    from foxglove.messages import RawAudio

    ns = int(round(chunk.timestamp_s * 1e9))
    return bytes(RawAudio(timestamp=_timestamp(max(ns, 0)), data=pcm_s16(chunk.samples),
                          format="pcm-s16", sample_rate=chunk.sample_rate_hz,
                          number_of_channels=1).encode())


def annotations_message(perception: Perception, log_time_ns: int) -> bytes:
    """What perception found as ``foxglove.ImageAnnotations``: a box and its text for
    each text line and barcode, a box for each face, the top label in a corner."""
    from foxglove.messages import (
        Color,
        ImageAnnotations,
        Point2,
        PointsAnnotation,
        PointsAnnotationType,
        TextAnnotation,
    )

    stamp = _timestamp(log_time_ns)
    boxes: list[Any] = []
    texts: list[Any] = []

    def box(rect: tuple[int, int, int, int], rgb: tuple[float, float, float],
            label: str) -> None:
        x0, y0, x1, y1 = (float(v) for v in rect)
        color = Color(r=rgb[0], g=rgb[1], b=rgb[2], a=1.0)
        boxes.append(PointsAnnotation(
            timestamp=stamp, type=PointsAnnotationType.LineLoop, outline_color=color,
            thickness=2.0, points=[Point2(x=x0, y=y0), Point2(x=x1, y=y0),
                                   Point2(x=x1, y=y1), Point2(x=x0, y=y1)]))
        if label:
            texts.append(TextAnnotation(timestamp=stamp, position=Point2(x=x0, y=max(0.0, y0 - 4)),
                                        text=label, font_size=14.0, text_color=color,
                                        background_color=Color(r=0, g=0, b=0, a=0.6)))

    for line in perception.text:
        box(line.box, (0.2, 0.9, 0.2), line.text)
    for code in perception.barcodes:
        box(code.box, (0.2, 0.6, 1.0), f"{code.type}: {code.data}")
    for face in perception.faces:
        box(face, (1.0, 0.3, 0.3), "face")
    if perception.labels:
        top = perception.labels[0]
        texts.append(TextAnnotation(timestamp=stamp, position=Point2(x=8.0, y=20.0),
                                    text=f"{top.name} {top.score:.2f}", font_size=16.0,
                                    text_color=Color(r=1, g=1, b=1, a=1),
                                    background_color=Color(r=0, g=0, b=0, a=0.6)))
    return bytes(ImageAnnotations(timestamp=stamp, points=boxes, texts=texts).encode())
