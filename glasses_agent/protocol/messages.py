"""Wire messages of the edge<->cloud protocol, each with one encode and one decode.

Control messages are JSON objects sent as websocket text messages::

    {"type": "query", "seq": 3, "query_id": "q-17", "text": "what is this?", ...}

Media (keyframes) are websocket binary messages: a 12-byte header, the query id
(UTF-8), then the JPEG::

    magic "GA" | version u8 | kind u8 | seq u32 | index u8 | reserved u8 | id_len u16
    | query_id | payload

Every message carries ``seq``, numbered from 1 on each connection in each
direction. These classes are wire messages, not runtime frames
(``glasses_agent.frames``): the client and the gateway convert at the edge.
``docs/protocol.md`` documents every field; keep the two in step.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from glasses_agent.protocol.codes import ErrorCode, ProtocolError
from glasses_agent.protocol.facts import Facts

__all__ = [
    "BINARY_HEADER",
    "CLIENT_MESSAGES",
    "MAX_IMAGES_PER_QUERY",
    "MAX_QUERY_ID_CHARS",
    "MAX_TEXT_CHARS",
    "PROTOCOL_VERSION",
    "SERVER_MESSAGES",
    "AnswerDelta",
    "AnswerDone",
    "AnswerReset",
    "CancelQuery",
    "ClientMessage",
    "ErrorMessage",
    "GoingAway",
    "Hello",
    "Keyframe",
    "Message",
    "Ping",
    "Pong",
    "QueryRequest",
    "ServerMessage",
    "SessionStarted",
    "check_query_id",
    "decode",
    "encode",
]

PROTOCOL_VERSION: Final = 1
MAX_QUERY_ID_CHARS: Final = 64
MAX_TEXT_CHARS: Final = 8000
MAX_IMAGES_PER_QUERY: Final = 2
_MAX_TOKEN_CHARS: Final = 512
_MAX_SHORT_CHARS: Final = 256
_MAX_SEQ: Final = 2**32 - 1
_QUERY_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

BINARY_HEADER: Final = struct.Struct("!2sBBIBBH")
_MAGIC: Final = b"GA"
_KIND_KEYFRAME: Final = 1
_JPEG_MAGIC: Final = b"\xff\xd8"
_BAD: Final = ErrorCode.BAD_MESSAGE


# --- field readers: each says exactly what is wrong -------------------------------------------


def _checked_text(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(_BAD, f"{where}: not valid UTF-8 text") from exc
    return value


def _str(obj: Mapping[str, Any], key: str, *, max_chars: int, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None:
        raise ProtocolError(_BAD, f"missing field {key!r}")
    if not isinstance(value, str):
        raise ProtocolError(_BAD, f"field {key!r} must be a string")
    if len(value) > max_chars:
        raise ProtocolError(_BAD, f"field {key!r} is longer than {max_chars} characters")
    return _checked_text(value, key)


def _int(
    obj: Mapping[str, Any], key: str, *, low: int, high: int, default: int | None = None
) -> int:
    value = obj.get(key, default)
    if value is None:
        raise ProtocolError(_BAD, f"missing field {key!r}")
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProtocolError(_BAD, f"field {key!r} must be an integer in [{low}, {high}]")
    return value


def _float(obj: Mapping[str, Any], key: str, *, default: float) -> float:
    value = obj.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < 1e9:
        raise ProtocolError(_BAD, f"field {key!r} must be a number >= 0")
    return float(value)


def _bool(obj: Mapping[str, Any], key: str, *, default: bool) -> bool:
    value = obj.get(key, default)
    if not isinstance(value, bool):
        raise ProtocolError(_BAD, f"field {key!r} must be true or false")
    return value


def _query_id(obj: Mapping[str, Any]) -> str:
    value = obj.get("query_id")
    if not isinstance(value, str) or not _QUERY_ID.fullmatch(value):
        raise ProtocolError(
            ErrorCode.BAD_MESSAGE, "field 'query_id' must be 1-64 characters of A-Z a-z 0-9 . _ : -"
        )
    return value


def _object(obj: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key, {})
    if not isinstance(value, dict):
        raise ProtocolError(_BAD, f"field {key!r} must be an object")
    return value


def check_query_id(query_id: str) -> str:
    """``query_id`` if it may travel on the wire, else ``ValueError``."""
    if not _QUERY_ID.fullmatch(query_id):
        raise ValueError(f"query id {query_id!r}: use 1-64 characters of A-Z a-z 0-9 . _ : -")
    return query_id


# --- client -> gateway ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello:
    """First message on every connection: who the device is and what it speaks."""

    TYPE: ClassVar[str] = "hello"
    token: str
    protocol: int = PROTOCOL_VERSION
    resume: str = ""  # the resume handle of the session to continue ("" = a new session)
    client: str = ""  # software name and version, for logs

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"protocol": self.protocol, "token": self.token}
        if self.resume:
            out["resume"] = self.resume
        if self.client:
            out["client"] = self.client
        return out

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> Hello:
        return cls(
            protocol=_int(obj, "protocol", low=0, high=65535),
            token=_str(obj, "token", max_chars=_MAX_TOKEN_CHARS, default=""),
            resume=_str(obj, "resume", max_chars=_MAX_SHORT_CHARS, default=""),
            client=_str(obj, "client", max_chars=_MAX_SHORT_CHARS, default=""),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryRequest:
    """A question for the cloud. ``images`` keyframes follow as binary messages.

    ``resume_from``: characters of the answer the edge already has (after a
    reconnect); the gateway streams from there, or says ``answer.reset``.
    """

    TYPE: ClassVar[str] = "query"
    query_id: str
    text: str
    facts: Facts = field(default_factory=Facts)
    images: int = 0
    contemplate: bool = False
    max_tokens: int = 128
    resume_from: int = 0

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"query_id": self.query_id, "text": self.text}
        if self.facts != Facts():
            out["facts"] = self.facts.to_wire()
        if self.images:
            out["images"] = self.images
        if self.contemplate:
            out["contemplate"] = True
        out["max_tokens"] = self.max_tokens
        if self.resume_from:
            out["resume_from"] = self.resume_from
        return out

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> QueryRequest:
        return cls(
            query_id=_query_id(obj),
            text=_str(obj, "text", max_chars=MAX_TEXT_CHARS),
            facts=Facts.from_wire(obj.get("facts", {})),
            images=_int(obj, "images", low=0, high=MAX_IMAGES_PER_QUERY, default=0),
            contemplate=_bool(obj, "contemplate", default=False),
            max_tokens=_int(obj, "max_tokens", low=1, high=4096, default=128),
            resume_from=_int(obj, "resume_from", low=0, high=10_000_000, default=0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelQuery:
    """Barge-in: stop this answer; ``heard_chars`` of it were spoken to the wearer."""

    TYPE: ClassVar[str] = "query.cancel"
    query_id: str
    heard_chars: int = 0

    def fields(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "heard_chars": self.heard_chars}

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> CancelQuery:
        return cls(
            query_id=_query_id(obj),
            heard_chars=_int(obj, "heard_chars", low=0, high=10_000_000, default=0),
        )


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class Keyframe:
    """One JPEG keyframe of a query (binary message). ``index``: 0 or 1."""

    TYPE: ClassVar[str] = "keyframe"
    query_id: str
    index: int
    jpeg: bytes


# --- both ways ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """Heartbeat; the peer answers ``pong`` with the same ``ping_id``."""

    TYPE: ClassVar[str] = "ping"
    ping_id: int

    def fields(self) -> dict[str, Any]:
        return {"ping_id": self.ping_id}

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> Ping:
        return cls(ping_id=_int(obj, "ping_id", low=0, high=_MAX_SEQ))


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    TYPE: ClassVar[str] = "pong"
    ping_id: int

    def fields(self) -> dict[str, Any]:
        return {"ping_id": self.ping_id}

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> Pong:
        return cls(ping_id=_int(obj, "ping_id", low=0, high=_MAX_SEQ))


# --- gateway -> client ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionStarted:
    """The hello is accepted. Keep ``resume_handle`` to resume after a reconnect."""

    TYPE: ClassVar[str] = "session.started"
    session_id: str
    resume_handle: str
    resumed: bool = False
    protocol: int = PROTOCOL_VERSION
    heartbeat_s: float = 10.0
    max_message_bytes: int = 1_048_576
    max_queries_in_flight: int = 4

    def fields(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "resume_handle": self.resume_handle,
            "resumed": self.resumed,
            "protocol": self.protocol,
            "limits": {
                "heartbeat_s": self.heartbeat_s,
                "max_message_bytes": self.max_message_bytes,
                "max_queries_in_flight": self.max_queries_in_flight,
                "max_images_per_query": MAX_IMAGES_PER_QUERY,
            },
        }

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> SessionStarted:
        limits = _object(obj, "limits")
        return cls(
            session_id=_str(obj, "session_id", max_chars=_MAX_SHORT_CHARS),
            resume_handle=_str(obj, "resume_handle", max_chars=_MAX_SHORT_CHARS),
            resumed=_bool(obj, "resumed", default=False),
            protocol=_int(obj, "protocol", low=0, high=65535, default=PROTOCOL_VERSION),
            heartbeat_s=_float(limits, "heartbeat_s", default=10.0),
            max_message_bytes=_int(limits, "max_message_bytes", low=1, high=2**31, default=1 << 20),
            max_queries_in_flight=_int(
                limits, "max_queries_in_flight", low=1, high=65535, default=4
            ),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerDelta:
    """A piece of the answer: ``text`` starts at character ``offset`` of the answer."""

    TYPE: ClassVar[str] = "answer.delta"
    query_id: str
    text: str
    offset: int

    def fields(self) -> dict[str, Any]:
        return {"query_id": self.query_id, "offset": self.offset, "text": self.text}

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> AnswerDelta:
        return cls(
            query_id=_query_id(obj),
            text=_str(obj, "text", max_chars=1 << 20),
            offset=_int(obj, "offset", low=0, high=10_000_000),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerReset:
    """The gateway starts this answer again from the beginning (it lost the earlier run):
    drop the characters received so far."""

    TYPE: ClassVar[str] = "answer.reset"
    query_id: str

    def fields(self) -> dict[str, Any]:
        return {"query_id": self.query_id}

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> AnswerReset:
        return cls(query_id=_query_id(obj))


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerDone:
    """The end of an answer: its whole text, usage and timing. Sent once per query id.

    ``replayed``: the answer was finished earlier and comes from the gateway's
    store (the query was re-sent). ``cancelled``: the edge cancelled it;
    ``text`` is what had been generated by then.
    """

    TYPE: ClassVar[str] = "answer.done"
    query_id: str
    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    first_delta_ms: float = 0.0
    total_ms: float = 0.0
    replayed: bool = False
    cancelled: bool = False
    heard_chars: int = 0

    def fields(self) -> dict[str, Any]:
        return {
            "query_id": self.query_id,
            "text": self.text,
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "estimated": self.usage_estimated,
            },
            "timing": {
                "first_delta_ms": round(self.first_delta_ms, 3),
                "total_ms": round(self.total_ms, 3),
            },
            "replayed": self.replayed,
            "cancelled": self.cancelled,
            "heard_chars": self.heard_chars,
        }

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> AnswerDone:
        usage = _object(obj, "usage")
        timing = _object(obj, "timing")
        return cls(
            query_id=_query_id(obj),
            text=_str(obj, "text", max_chars=1 << 20),
            prompt_tokens=_int(usage, "prompt_tokens", low=0, high=2**31, default=0),
            completion_tokens=_int(usage, "completion_tokens", low=0, high=2**31, default=0),
            usage_estimated=_bool(usage, "estimated", default=False),
            first_delta_ms=_float(timing, "first_delta_ms", default=0.0),
            total_ms=_float(timing, "total_ms", default=0.0),
            replayed=_bool(obj, "replayed", default=False),
            cancelled=_bool(obj, "cancelled", default=False),
            heard_chars=_int(obj, "heard_chars", low=0, high=10_000_000, default=0),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorMessage:
    """A refusal. With ``query_id``: that query is over (no ``answer.done`` follows).
    Without: about the connection; ``fatal`` means a close follows. The edge sends
    ``error`` too, to report a malformed message from the gateway (for its logs)."""

    TYPE: ClassVar[str] = "error"
    code: str
    message: str
    query_id: str = ""
    fatal: bool = False

    def fields(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message, "fatal": self.fatal}
        if self.query_id:
            out["query_id"] = self.query_id
        return out

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> ErrorMessage:
        return cls(
            code=_str(obj, "code", max_chars=_MAX_SHORT_CHARS),
            message=_str(obj, "message", max_chars=4096, default=""),
            query_id=_query_id(obj) if "query_id" in obj else "",
            fatal=_bool(obj, "fatal", default=False),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class GoingAway:
    """The gateway is shutting down: reconnect (to another replica) after the delay.
    Unfinished answers are not kept: re-send them."""

    TYPE: ClassVar[str] = "going_away"
    reason: str = "shutting down"
    reconnect_after_s: float = 0.0

    def fields(self) -> dict[str, Any]:
        return {"reason": self.reason, "reconnect_after_s": self.reconnect_after_s}

    @classmethod
    def from_fields(cls, obj: Mapping[str, Any]) -> GoingAway:
        return cls(
            reason=_str(obj, "reason", max_chars=_MAX_SHORT_CHARS, default=""),
            reconnect_after_s=_float(obj, "reconnect_after_s", default=0.0),
        )


ClientMessage = Hello | QueryRequest | CancelQuery | Keyframe | Ping | Pong | ErrorMessage
ServerMessage = (
    SessionStarted | AnswerDelta | AnswerReset | AnswerDone | ErrorMessage | GoingAway | Ping | Pong
)
Message = ClientMessage | ServerMessage
_JsonMessage = (
    Hello | QueryRequest | CancelQuery | Ping | Pong | SessionStarted | AnswerDelta | AnswerReset
    | AnswerDone | ErrorMessage | GoingAway
)

CLIENT_MESSAGES: Final[Mapping[str, type[_JsonMessage]]] = {
    cls.TYPE: cls for cls in (Hello, QueryRequest, CancelQuery, Ping, Pong, ErrorMessage)
}
SERVER_MESSAGES: Final[Mapping[str, type[_JsonMessage]]] = {
    cls.TYPE: cls
    for cls in (SessionStarted, AnswerDelta, AnswerReset, AnswerDone, ErrorMessage, GoingAway,
                Ping, Pong)
}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def encode(message: Message, seq: int) -> str | bytes:
    """The websocket message for ``message``: ``str`` (JSON) or ``bytes`` (a keyframe)."""
    if isinstance(message, Keyframe):
        qid = message.query_id.encode("utf-8")
        header = BINARY_HEADER.pack(_MAGIC, PROTOCOL_VERSION, _KIND_KEYFRAME, seq,
                                    message.index, 0, len(qid))
        return header + qid + message.jpeg
    body = {"type": message.TYPE, "seq": seq, **message.fields()}
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def decode(
    data: str | bytes, types: Mapping[str, type[_JsonMessage]]
) -> tuple[int, Message]:
    """``(seq, message)`` from one websocket message; ``ProtocolError`` says what is wrong.

    ``types`` is ``CLIENT_MESSAGES`` on the gateway and ``SERVER_MESSAGES`` on the edge
    (binary keyframes are only accepted where ``types`` is ``CLIENT_MESSAGES``).
    """
    if isinstance(data, bytes | bytearray | memoryview):
        if types is not CLIENT_MESSAGES:
            raise ProtocolError(_BAD, "binary messages only go from edge to gateway")
        return _decode_keyframe(bytes(data))
    try:
        obj = json.loads(data, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(_BAD, "not valid JSON") from exc
    if not isinstance(obj, dict):
        raise ProtocolError(_BAD, "a control message must be a JSON object")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(_BAD, "missing field 'type'")
    cls = types.get(kind)
    if cls is None:
        raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"unknown message type {kind[:40]!r}")
    seq = _int(obj, "seq", low=1, high=_MAX_SEQ)
    return seq, cls.from_fields(obj)


def _decode_keyframe(data: bytes) -> tuple[int, Keyframe]:
    if len(data) < BINARY_HEADER.size:
        raise ProtocolError(_BAD, "binary message shorter than its header")
    magic, version, kind, seq, index, _, id_len = BINARY_HEADER.unpack_from(data)
    if magic != _MAGIC or version != PROTOCOL_VERSION:
        raise ProtocolError(_BAD, "binary message without the GA v1 header")
    if kind != _KIND_KEYFRAME:
        raise ProtocolError(_BAD, f"unknown binary message kind {kind}")
    if not 1 <= seq <= _MAX_SEQ:
        raise ProtocolError(_BAD, "binary message seq must be >= 1")
    end = BINARY_HEADER.size + id_len
    try:
        query_id = data[BINARY_HEADER.size:end].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(_BAD, "keyframe query id is not UTF-8") from exc
    if end > len(data) or not _QUERY_ID.fullmatch(query_id):
        raise ProtocolError(_BAD, "keyframe header names no valid query id")
    # From here on the refusal names the query (it ends that query).
    if index >= MAX_IMAGES_PER_QUERY:
        raise ProtocolError(ErrorCode.TOO_MANY_IMAGES,
                            f"keyframe index {index} (at most 2 per query)", query_id=query_id)
    jpeg = data[end:]
    if not jpeg.startswith(_JPEG_MAGIC):
        raise ProtocolError(ErrorCode.BAD_IMAGE, "keyframe payload is not a JPEG",
                            query_id=query_id)
    return seq, Keyframe(query_id=query_id, index=index, jpeg=jpeg)
