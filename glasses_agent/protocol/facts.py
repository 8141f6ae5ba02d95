"""``Facts``: what the edge perceived, as it travels with an escalated query.

One typed vocabulary, from the router that builds it on the glasses to the
prompts and the contemplating agents that read it in the gateway. On the wire
it is the ``facts`` object of a ``query`` message (docs/protocol.md, "Facts"),
with its version ``v``::

    {"v": 1, "labels": [{"name": "espresso", "score": 0.91}], "text": ["EXIT 12"],
     "barcodes": [{"type": "EAN-13", "data": "4006381333931"}], "people_in_view": 2,
     "location": {"lat": 48.85837, "lon": 2.29448}, "local_time": "2026-11-03T14:05:00+01:00",
     "intent": "read_text", "extra": {"depth": "the wall is 2 m away"}}

Every field is optional (empty ones are left out). A decoder ignores fields it
does not know, so an edge one version ahead still gets answered; a known field
of the wrong shape is a ``bad_message`` naming it. ``extra`` carries the facts of
perception steps added later (name -> one short line), rendered as they are.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from glasses_agent.protocol.codes import ErrorCode, ProtocolError

__all__ = ["FACTS_VERSION", "Facts", "Location", "SeenBarcode", "SeenLabel"]

FACTS_VERSION: Final = 1
MAX_ITEMS: Final = 32  # labels, text lines, barcodes, extra entries: each at most this many
MAX_ITEM_CHARS: Final = 512


@dataclass(frozen=True, slots=True, kw_only=True)
class SeenLabel:
    """A recognition label and its probability (0..1)."""

    name: str
    score: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SeenBarcode:
    """A decoded barcode: ``type`` is the symbology as spoken ("EAN-13", "QR code")."""

    type: str
    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Location:
    lat: float
    lon: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Facts:
    """What the edge perceived for one query (see the module docstring)."""

    labels: tuple[SeenLabel, ...] = ()
    # Labels of the centre crop: what the wearer is looking at.
    center_labels: tuple[SeenLabel, ...] = ()
    # Lines of text read, in reading order.
    text: tuple[str, ...] = ()
    barcodes: tuple[SeenBarcode, ...] = ()
    people_in_view: int = 0
    # Only when the wearer allows it.
    location: Location | None = None
    # The wearer's local time, ISO 8601 with its UTC offset.
    local_time: str = ""
    # What the router classified the question as ("identify", "read_text", ..., "other").
    intent: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    @property
    def sees_something(self) -> bool:
        """Labels, text or barcodes: something the camera showed."""
        return bool(self.labels or self.center_labels or self.text or self.barcodes)

    def local_datetime(self) -> datetime | None:
        """``local_time`` as a datetime (None when absent or unreadable)."""
        try:
            return datetime.fromisoformat(self.local_time) if self.local_time else None
        except ValueError:
            return None

    def to_wire(self) -> dict[str, Any]:
        """The ``facts`` object of a query message (empty fields left out)."""
        out: dict[str, Any] = {"v": FACTS_VERSION}
        if self.labels:
            out["labels"] = [{"name": x.name, "score": x.score} for x in self.labels]
        if self.center_labels:
            out["center_labels"] = [{"name": x.name, "score": x.score}
                                    for x in self.center_labels]
        if self.text:
            out["text"] = list(self.text)
        if self.barcodes:
            out["barcodes"] = [{"type": b.type, "data": b.data} for b in self.barcodes]
        if self.people_in_view:
            out["people_in_view"] = self.people_in_view
        if self.location is not None:
            out["location"] = {"lat": self.location.lat, "lon": self.location.lon}
        if self.local_time:
            out["local_time"] = self.local_time
        if self.intent:
            out["intent"] = self.intent
        if self.extra:
            out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_wire(cls, obj: Any) -> Facts:
        """Read a ``facts`` object; ``ProtocolError`` (bad_message) names a malformed field."""
        if not isinstance(obj, Mapping):
            raise _bad("facts", "must be an object")
        version = obj.get("v", FACTS_VERSION)
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise _bad("facts.v", "must be a version number >= 1")
        location = obj.get("location")
        return cls(
            labels=_labels(obj, "labels"),
            center_labels=_labels(obj, "center_labels"),
            text=tuple(_text(item, f"facts.text[{i}]")
                       for i, item in enumerate(_list(obj, "text"))),
            barcodes=tuple(_barcode(item, f"facts.barcodes[{i}]")
                           for i, item in enumerate(_list(obj, "barcodes"))),
            people_in_view=_count(obj.get("people_in_view", 0), "facts.people_in_view"),
            location=None if location is None else _location(location),
            local_time=_local_time(obj.get("local_time", "")),
            intent=_text(obj.get("intent", ""), "facts.intent", max_chars=64),
            extra=_extra(obj.get("extra", {})),
        )


def _bad(where: str, what: str) -> ProtocolError:
    return ProtocolError(ErrorCode.BAD_MESSAGE, f"{where} {what}")


def _list(obj: Mapping[str, Any], key: str) -> Sequence[Any]:
    value = obj.get(key, [])
    if not isinstance(value, list):
        raise _bad(f"facts.{key}", "must be a list")
    if len(value) > MAX_ITEMS:
        raise _bad(f"facts.{key}", f"has more than {MAX_ITEMS} items")
    return value


def _text(value: Any, where: str, *, max_chars: int = MAX_ITEM_CHARS) -> str:
    if not isinstance(value, str):
        raise _bad(where, "must be a string")
    if len(value) > max_chars:
        raise _bad(where, f"is longer than {max_chars} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _bad(where, "is not valid UTF-8 text") from exc
    return value


def _number(value: Any, where: str, low: float, high: float) -> float:
    if (not isinstance(value, int | float) or isinstance(value, bool)
            or not math.isfinite(value) or not low <= value <= high):
        raise _bad(where, f"must be a number in [{low:g}, {high:g}]")
    return float(value)


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 10_000:
        raise _bad(where, "must be an integer in [0, 10000]")
    return value


def _labels(obj: Mapping[str, Any], key: str) -> tuple[SeenLabel, ...]:
    out = []
    for i, item in enumerate(_list(obj, key)):
        where = f"facts.{key}[{i}]"
        if not isinstance(item, Mapping):
            raise _bad(where, "must be an object with name and score")
        out.append(SeenLabel(name=_text(item.get("name"), f"{where}.name", max_chars=128),
                             score=_number(item.get("score", 0.0), f"{where}.score", 0.0, 1.0)))
    return tuple(out)


def _barcode(item: Any, where: str) -> SeenBarcode:
    if not isinstance(item, Mapping):
        raise _bad(where, "must be an object with type and data")
    return SeenBarcode(type=_text(item.get("type", ""), f"{where}.type", max_chars=64),
                       data=_text(item.get("data"), f"{where}.data", max_chars=4096))


def _location(value: Any) -> Location:
    if not isinstance(value, Mapping):
        raise _bad("facts.location", "must be an object with lat and lon")
    return Location(lat=_number(value.get("lat"), "facts.location.lat", -90.0, 90.0),
                    lon=_number(value.get("lon"), "facts.location.lon", -180.0, 180.0))


def _local_time(value: Any) -> str:
    text = _text(value, "facts.local_time", max_chars=64)
    if text:
        try:
            parsed = datetime.fromisoformat(text)
        except ValueError as exc:
            raise _bad("facts.local_time", "must be an ISO 8601 time") from exc
        if parsed.tzinfo is None:
            raise _bad("facts.local_time", "must carry its UTC offset")
    return text


def _extra(value: Any) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise _bad("facts.extra", "must be an object of short texts")
    if len(value) > MAX_ITEMS:
        raise _bad("facts.extra", f"has more than {MAX_ITEMS} entries")
    return {_text(k, "facts.extra key", max_chars=64): _text(v, f"facts.extra.{k}")
            for k, v in value.items()}
