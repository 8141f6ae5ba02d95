"""The protocol state machine for both roles, sans-I/O.

Nothing here touches a socket, a task or a clock. An adapter
(``glasses_agent.transport``) moves websocket messages in and out::

    events = conn.receive_text(message, now_s)   # or receive_bytes
    ... act on events, call conn.send_delta(...), conn.accept(...), ...
    for item in conn.data_to_send():             # str, bytes, or a final Close
        ...
    conn.tick(now_s)                             # at conn.next_tick_s: heartbeats, timeouts

``ServerConnection`` lives for one websocket connection. ``ClientConnection``
lives for the whole edge session and spans reconnects: ``start(now_s)`` begins
each new transport, and the queries it holds (with the characters already
received) are re-sent after every handshake, so resuming and deduplication are
decided here and tested without sockets.
"""

from __future__ import annotations

import dataclasses
import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from glasses_agent.protocol.codes import NO_RETRY, CloseCode, ErrorCode, ProtocolError
from glasses_agent.protocol.messages import (
    CLIENT_MESSAGES,
    MAX_IMAGES_PER_QUERY,
    PROTOCOL_VERSION,
    SERVER_MESSAGES,
    AnswerDelta,
    AnswerDone,
    AnswerReset,
    CancelQuery,
    ErrorMessage,
    GoingAway,
    Hello,
    Keyframe,
    Message,
    Ping,
    Pong,
    QueryRequest,
    SessionStarted,
    check_query_id,
    decode,
    encode,
)

__all__ = [
    "AnswerFinished",
    "AnswerRestarted",
    "CancelReceived",
    "ClientConnection",
    "ClientEvent",
    "Close",
    "DeltaReceived",
    "Disconnected",
    "ErrorReceived",
    "GoingAwayReceived",
    "HelloReceived",
    "Limits",
    "Outgoing",
    "ProtocolViolation",
    "QueryFailed",
    "QueryReceived",
    "ServerConnection",
    "ServerEvent",
    "SessionOpened",
    "State",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Per-connection limits. ``heartbeat_timeout_s`` 0 means three heartbeats."""

    max_message_bytes: int = 1_048_576
    max_queries_in_flight: int = 4
    heartbeat_s: float = 10.0
    heartbeat_timeout_s: float = 0.0
    handshake_timeout_s: float = 10.0
    # Malformed messages tolerated on one connection (each answered with an error).
    max_errors: int = 32
    # Messages queued for a peer that is not reading them (after coalescing: consecutive
    # deltas of one answer become one, pongs answer only the newest ping). Past this the
    # peer is too slow: an error and a close (4006) are all that is left to send.
    max_send_queue: int = 256
    # Pings a peer may send per second (and in a burst): more are errors.
    max_pings_per_s: float = 5.0
    ping_burst: int = 20

    @property
    def silence_timeout_s(self) -> float:
        return self.heartbeat_timeout_s or 3.0 * self.heartbeat_s


class State(enum.Enum):
    CONNECTING = "connecting"  # transport up, handshake not finished
    OPEN = "open"
    CLOSING = "closing"  # a Close is queued: send it, then stop
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class Close:
    """The last item of ``data_to_send``: close the websocket with this code and reason."""

    code: int
    reason: str


Outgoing = str | bytes | Close


# --- events ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProtocolViolation:
    """The peer sent something unacceptable; an ``error`` went back (for logs)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloReceived:
    """Call ``accept`` or ``refuse`` next."""

    hello: Hello


@dataclass(frozen=True, slots=True, kw_only=True, eq=False)
class QueryReceived:
    """A complete query: the JSON message and all its keyframes."""

    request: QueryRequest
    images_jpeg: tuple[bytes, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelReceived:
    query_id: str
    heard_chars: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionOpened:
    started: SessionStarted


@dataclass(frozen=True, slots=True, kw_only=True)
class DeltaReceived:
    """New answer text (replayed or duplicate characters already removed)."""

    query_id: str
    text: str
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerRestarted:
    """The gateway lost its earlier run of this answer and starts it again."""

    query_id: str
    discarded_chars: int


@dataclass(frozen=True, slots=True, kw_only=True)
class AnswerFinished:
    """Emitted once per query id, whatever the gateway re-sends."""

    done: AnswerDone


@dataclass(frozen=True, slots=True, kw_only=True)
class QueryFailed:
    query_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorReceived:
    error: ErrorMessage


@dataclass(frozen=True, slots=True, kw_only=True)
class GoingAwayReceived:
    going_away: GoingAway


@dataclass(frozen=True, slots=True, kw_only=True)
class Disconnected:
    """The transport is gone. ``retry`` is False for refusals that a retry cannot fix."""

    code: int
    reason: str
    retry: bool


ServerEvent = ProtocolViolation | HelloReceived | QueryReceived | CancelReceived | ErrorReceived
ClientEvent = (
    ProtocolViolation | SessionOpened | DeltaReceived | AnswerRestarted | AnswerFinished
    | QueryFailed | ErrorReceived | GoingAwayReceived | Disconnected
)


# --- shared machinery -----------------------------------------------------------------------


class _Core:
    """Sequence numbers, size limit, error budget, heartbeats and the outgoing queue."""

    def __init__(self, limits: Limits, now_s: float) -> None:
        self.limits = limits
        self.state = State.CLOSED
        self._out: list[Message | Close] = []
        self._send_seq = 0
        self._ping_tokens = float(limits.ping_burst)
        self._ping_checked_s = now_s
        self._recv_seq = 0
        self._errors = 0
        self._started_s = now_s
        self._last_recv_s = now_s
        self._last_ping_s = now_s
        self._ping_id = 0
        self._gaps: list[ProtocolViolation] = []

    @property
    def _closing(self) -> bool:
        return self.state is State.CLOSING

    def _take_gaps(self) -> list[ProtocolViolation]:
        gaps, self._gaps = self._gaps, []
        return gaps

    # calls -> bytes out

    def data_to_send(self) -> list[Outgoing]:
        """Websocket messages to send, in order; a ``Close`` is always last."""
        queued, self._out = self._out, []
        out: list[Outgoing] = []
        for item in queued:
            if isinstance(item, Close):
                out.append(item)
            else:
                self._send_seq += 1
                out.append(encode(item, self._send_seq))
        return out

    @property
    def send_queue_depth(self) -> int:
        """Messages queued and not yet taken by ``data_to_send``."""
        return len(self._out)

    def _send(self, message: Message) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        last = self._out[-1] if self._out else None
        if (isinstance(message, AnswerDelta) and isinstance(last, AnswerDelta)
                and last.query_id == message.query_id
                and last.offset + len(last.text) == message.offset):
            # The peer has not taken the last delta yet: send both as one.
            self._out[-1] = dataclasses.replace(last, text=last.text + message.text)
            return
        if isinstance(message, Pong) and any(isinstance(m, Pong) for m in self._out):
            # One pong, for the newest ping, says the same as many.
            self._out = [m for m in self._out if not isinstance(m, Pong)]
        self._out.append(message)
        if len(self._out) > self.limits.max_send_queue:
            self._out.clear()
            self._fail(ErrorCode.TOO_SLOW, f"more than {self.limits.max_send_queue} messages "
                       "wait for you to read them", CloseCode.TOO_SLOW)

    def _close(self, code: int, reason: str) -> None:
        if self.state in (State.CLOSING, State.CLOSED):
            return
        self.state = State.CLOSING
        self._out.append(Close(code=code, reason=reason))

    def _fail(self, code: str, message: str, close_code: int) -> None:
        self._send(ErrorMessage(code=code, message=message, fatal=True))
        self._close(close_code, code)

    def _ping_allowed(self, now_s: float) -> bool:
        """A token bucket: ``max_pings_per_s``, bursts of ``ping_burst``."""
        elapsed_s = max(0.0, now_s - self._ping_checked_s)
        self._ping_checked_s = now_s
        self._ping_tokens = min(float(self.limits.ping_burst),
                                self._ping_tokens + elapsed_s * self.limits.max_pings_per_s)
        if self._ping_tokens < 1.0:
            return False
        self._ping_tokens -= 1.0
        return True

    # bytes in -> events out

    def _decode(
        self, data: str | bytes, now_s: float, *, heartbeats: bool = True
    ) -> Message | ProtocolViolation | None:
        if self.state in (State.CLOSING, State.CLOSED):
            return None
        self._last_recv_s = now_s
        size = len(data)
        if isinstance(data, str) and size * 4 > self.limits.max_message_bytes:
            size = len(data.encode("utf-8", "surrogatepass"))
        if size > self.limits.max_message_bytes:
            message = f"message of {size} bytes (limit {self.limits.max_message_bytes})"
            self._fail(ErrorCode.MESSAGE_TOO_BIG, message, CloseCode.MESSAGE_TOO_BIG)
            return ProtocolViolation(code=ErrorCode.MESSAGE_TOO_BIG, message=message)
        types = SERVER_MESSAGES if isinstance(self, ClientConnection) else CLIENT_MESSAGES
        try:
            seq, message_in = decode(data, types)
        except ProtocolError as exc:
            self._recv_seq += 1  # the peer numbered it; stay in step with the next one
            return self._rejected(exc)
        expected = self._recv_seq + 1
        self._recv_seq = seq
        if seq != expected:
            # Reported, then handled all the same: a numbering slip loses nothing.
            self._gaps.append(self._violation(ErrorCode.BAD_SEQUENCE,
                                              f"seq {seq}, expected {expected}"))
            if self._closing:
                return None
        if heartbeats and isinstance(message_in, Ping):
            if not self._ping_allowed(now_s):
                return self._violation(ErrorCode.RATE_LIMITED, "pings come faster than "
                                       f"{self.limits.max_pings_per_s:g} per second")
            self._send(Pong(ping_id=message_in.ping_id))
            return None
        if heartbeats and isinstance(message_in, Pong):
            return None
        return message_in

    def _rejected(self, error: ProtocolError) -> ProtocolViolation:
        """A message that could not be decoded (``ServerConnection`` ends its query)."""
        return self._violation(error.code, str(error))

    def _violation(self, code: str, message: str, query_id: str = "") -> ProtocolViolation:
        self._send(ErrorMessage(code=code, message=message, query_id=query_id))
        self._count_error()
        return ProtocolViolation(code=code, message=message)

    def _count_error(self) -> None:
        """One more refusal on this connection; too many close it (4004)."""
        self._errors += 1
        if self._errors > self.limits.max_errors:
            self._fail(ErrorCode.TOO_MANY_ERRORS,
                       f"more than {self.limits.max_errors} bad messages",
                       CloseCode.TOO_MANY_ERRORS)

    # time

    @property
    def next_tick_s(self) -> float:
        """When ``tick`` has something to do next (a ping or a timeout)."""
        if self.state is State.CONNECTING:
            return self._started_s + self.limits.handshake_timeout_s
        return min(self._last_ping_s + self.limits.heartbeat_s,
                   self._last_recv_s + self.limits.silence_timeout_s)

    def tick(self, now_s: float) -> None:
        """Heartbeats: a ``ping`` when due, a close when the peer has gone silent."""
        if self.state is State.CONNECTING:
            if now_s - self._started_s >= self.limits.handshake_timeout_s:
                self._fail(ErrorCode.HANDSHAKE_TIMEOUT,
                           "no handshake in time", CloseCode.BAD_HANDSHAKE)
            return
        if self.state is not State.OPEN:
            return
        if now_s - self._last_recv_s >= self.limits.silence_timeout_s:
            silent = now_s - self._last_recv_s
            self._fail(ErrorCode.HEARTBEAT_TIMEOUT, f"nothing received for {silent:.1f} s",
                       CloseCode.HEARTBEAT_TIMEOUT)
        elif now_s - self._last_ping_s >= self.limits.heartbeat_s:
            self._ping_id += 1
            self._last_ping_s = now_s
            self._send(Ping(ping_id=self._ping_id))

    def connection_closed(self) -> None:
        self.state = State.CLOSED


# --- gateway side ---------------------------------------------------------------------------


class ServerConnection(_Core):
    """One edge connection, gateway side. Authentication is the caller's: on
    ``HelloReceived`` it calls ``accept`` or ``refuse``."""

    def __init__(self, limits: Limits, now_s: float) -> None:
        super().__init__(limits, now_s)
        self.state = State.CONNECTING
        self._hello_seen = False
        self._in_flight: set[str] = set()
        # Cancelled by the edge, their answer.done (cancelled) not sent yet: they no longer
        # count toward the limit (the edge freed their slot when it cancelled).
        self._cancelling: set[str] = set()
        self._assembling: dict[str, tuple[QueryRequest, list[bytes]]] = {}
        self._discarding: dict[str, int] = {}  # refused queries whose keyframes still come

    @property
    def in_flight(self) -> frozenset[str]:
        """Query ids received and not yet ended by ``send_done`` or ``send_query_error``."""
        return frozenset(self._in_flight)

    def receive_text(self, data: str, now_s: float) -> list[ServerEvent]:
        return self._receive(data, now_s)

    def receive_bytes(self, data: bytes, now_s: float) -> list[ServerEvent]:
        return self._receive(data, now_s)

    def _receive(self, data: str | bytes, now_s: float) -> list[ServerEvent]:
        if self.state is State.CONNECTING and not self._hello_seen:
            events = self._receive_hello(data, now_s)
            return [*self._take_gaps(), *events]
        message = self._decode(data, now_s)
        gaps: list[ServerEvent] = [*self._take_gaps()]
        if message is None or isinstance(message, ProtocolViolation):
            return gaps + ([message] if message else [])
        return gaps + self._handle(message)

    def _handle(self, message: Message) -> list[ServerEvent]:
        if self.state is State.CONNECTING:
            return [self._violation(ErrorCode.HANDSHAKE_PENDING, "wait for session.started")]
        if isinstance(message, QueryRequest):
            return self._on_query(message)
        if isinstance(message, Keyframe):
            return self._on_keyframe(message)
        if isinstance(message, ErrorMessage):
            return [ErrorReceived(error=message)]  # the edge's report, for the logs
        if isinstance(message, CancelQuery):
            if message.query_id in self._assembling:
                del self._assembling[message.query_id]
                self.send_done(AnswerDone(query_id=message.query_id, text="", cancelled=True,
                                          heard_chars=message.heard_chars))
                return []
            if message.query_id in self._in_flight:
                self._cancelling.add(message.query_id)
                return [CancelReceived(query_id=message.query_id,
                                       heard_chars=message.heard_chars)]
            return []  # already over: nothing to cancel
        return [self._violation(ErrorCode.UNEXPECTED_MESSAGE,
                                f"{message.TYPE} is not expected now")]

    def _receive_hello(self, data: str | bytes, now_s: float) -> list[ServerEvent]:
        message = self._decode(data, now_s, heartbeats=False)
        if message is None:
            return []
        if isinstance(message, ProtocolViolation) and self.state is State.CLOSING:
            return [message]  # too big: already refused
        if isinstance(message, ProtocolViolation) or not isinstance(message, Hello):
            detail = message.message if isinstance(message, ProtocolViolation) else (
                f"got {message.TYPE}")
            self._out.clear()
            self._send_seq = 0
            self._fail(ErrorCode.BAD_HANDSHAKE,
                       f"the first message must be a valid hello: {detail}",
                       CloseCode.BAD_HANDSHAKE)
            return [ProtocolViolation(code=ErrorCode.BAD_HANDSHAKE, message=detail)]
        self._hello_seen = True
        if message.protocol != PROTOCOL_VERSION:
            self._fail(ErrorCode.UNSUPPORTED_VERSION,
                       f"protocol {message.protocol} is not spoken here (use {PROTOCOL_VERSION})",
                       CloseCode.UNSUPPORTED_VERSION)
            return [ProtocolViolation(code=ErrorCode.UNSUPPORTED_VERSION,
                                      message=str(message.protocol))]
        return [HelloReceived(hello=message)]

    def _on_query(self, query: QueryRequest) -> list[ServerEvent]:
        qid = query.query_id
        if qid in self._in_flight:
            return [self._violation(ErrorCode.DUPLICATE_QUERY,
                                    f"query {qid} is already being answered")]
        if len(self._in_flight) - len(self._cancelling) >= self.limits.max_queries_in_flight:
            if query.images and len(self._discarding) < 2 * self.limits.max_queries_in_flight:
                self._discarding[qid] = query.images
            self._send(ErrorMessage(
                code=ErrorCode.BUSY, query_id=qid,
                message=f"{self.limits.max_queries_in_flight} queries are already in flight",
            ))
            self._count_error()  # a client that keeps asking past the limit is misbehaving
            return []
        self._in_flight.add(qid)
        if query.images:
            self._assembling[qid] = (query, [])
            return []
        return [QueryReceived(request=query)]

    def _on_keyframe(self, frame: Keyframe) -> list[ServerEvent]:
        qid = frame.query_id
        if qid in self._discarding:
            self._discard_one(qid)
            return []
        if qid not in self._assembling:
            return [self._violation(ErrorCode.UNEXPECTED_IMAGE,
                                    f"no query {qid} waits for a keyframe")]
        query, images = self._assembling[qid]
        if frame.index != len(images):
            return [self._end_query(ErrorCode.UNEXPECTED_IMAGE, qid,
                                    f"keyframe {frame.index} of {qid}, expected {len(images)}")]
        images.append(frame.jpeg)
        if len(images) < query.images:
            return []
        del self._assembling[qid]
        return [QueryReceived(request=query, images_jpeg=tuple(images))]

    def _discard_one(self, qid: str) -> None:
        self._discarding[qid] -= 1
        if self._discarding[qid] <= 0:
            del self._discarding[qid]

    def _rejected(self, error: ProtocolError) -> ProtocolViolation:
        """A keyframe refused (not a JPEG, a bad index) ends the query it belongs to: every
        query has its one ending."""
        qid = error.query_id
        if qid and qid in self._assembling:
            return self._end_query(error.code, qid, str(error))
        if qid and qid in self._discarding:
            self._discard_one(qid)
        return self._violation(error.code, str(error))

    def _end_query(self, code: str, qid: str, message: str) -> ProtocolViolation:
        """Refuse an assembling query: an ``error`` with its id (its ending), counted."""
        self._assembling.pop(qid, None)
        self._in_flight.discard(qid)
        return self._violation(code, message, query_id=qid)

    # calls -> bytes out

    def accept(self, *, session_id: str, resume_handle: str, resumed: bool) -> None:
        if self.state is not State.CONNECTING or not self._hello_seen:
            raise RuntimeError("accept() answers a HelloReceived")
        self.state = State.OPEN
        self._send(SessionStarted(
            session_id=session_id, resume_handle=resume_handle, resumed=resumed,
            heartbeat_s=self.limits.heartbeat_s,
            max_message_bytes=self.limits.max_message_bytes,
            max_queries_in_flight=self.limits.max_queries_in_flight,
        ))

    def refuse(self, *, code: str, message: str, close_code: int) -> None:
        """Refuse the hello (or end the connection): an ``error`` then a close."""
        self._fail(code, message, close_code)

    def send_delta(self, query_id: str, text: str, offset: int) -> bool:
        """Queue a delta; False when the query is no longer in flight here."""
        if query_id not in self._in_flight or not text:
            return False
        self._send(AnswerDelta(query_id=query_id, text=text, offset=offset))
        return True

    def send_reset(self, query_id: str) -> bool:
        if query_id not in self._in_flight:
            return False
        self._send(AnswerReset(query_id=query_id))
        return True

    def send_done(self, done: AnswerDone) -> bool:
        if done.query_id not in self._in_flight:
            return False
        self._in_flight.discard(done.query_id)
        self._cancelling.discard(done.query_id)
        self._send(done)
        return True

    def send_query_error(self, query_id: str, code: str, message: str) -> bool:
        if query_id not in self._in_flight:
            return False
        self._in_flight.discard(query_id)
        self._cancelling.discard(query_id)
        self._assembling.pop(query_id, None)
        self._send(ErrorMessage(code=code, message=message, query_id=query_id))
        return True

    def going_away(self, *, reason: str = "shutting down", reconnect_after_s: float = 0.0) -> None:
        """Graceful shutdown: tell the edge to reconnect (elsewhere), then close 1001."""
        self._send(GoingAway(reason=reason, reconnect_after_s=reconnect_after_s))
        self._close(CloseCode.GOING_AWAY, "going_away")


# --- edge side ------------------------------------------------------------------------------


@dataclass(slots=True, kw_only=True, eq=False)
class _Pending:
    request: QueryRequest
    images_jpeg: tuple[bytes, ...]
    text: str = ""
    on_wire: bool = False
    sent_once: bool = False


class ClientConnection(_Core):
    """The edge side, across reconnects. Queries wait here until answered: they go
    out when a session is open (at most the gateway's ``max_queries_in_flight`` at
    once) and again after each new handshake, with ``resume_from`` set to the
    characters already received. Each query ends exactly once: ``AnswerFinished``,
    ``QueryFailed``, or the caller's ``cancel``."""

    def __init__(self, *, token: str, limits: Limits, client_name: str = "",
                 remember_answered: int = 4096) -> None:
        super().__init__(limits, 0.0)
        self.token = token
        self.client_name = client_name
        self.session_id = ""
        self.resume_handle = ""
        self._server_max_in_flight = limits.max_queries_in_flight
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._ended: OrderedDict[str, None] = OrderedDict()
        self._remember = remember_answered

    @property
    def pending(self) -> tuple[str, ...]:
        """Query ids not yet ended, oldest first."""
        return tuple(self._pending)

    def received_text(self, query_id: str) -> str:
        pending = self._pending.get(query_id)
        return pending.text if pending else ""

    def start(self, now_s: float) -> None:
        """A new transport is up: send the hello (with the resume handle, if any)."""
        self._out = []
        self._send_seq = self._recv_seq = self._errors = 0
        self._started_s = self._last_recv_s = self._last_ping_s = now_s
        self.state = State.CONNECTING
        for pending in self._pending.values():
            pending.on_wire = False
        self._send(Hello(token=self.token, resume=self.resume_handle, client=self.client_name))

    def ask(self, request: QueryRequest, images_jpeg: Iterable[bytes] = ()) -> None:
        """Queue a query; it is sent now if a session is open, else after the handshake."""
        check_query_id(request.query_id)
        qid = request.query_id
        if qid in self._pending or qid in self._ended:
            raise ValueError(f"query id {qid} was already used")
        images = tuple(images_jpeg)
        if len(images) > MAX_IMAGES_PER_QUERY:
            raise ValueError(f"at most {MAX_IMAGES_PER_QUERY} keyframes per query")
        request = dataclasses.replace(request, images=len(images), resume_from=0)
        self._pending[qid] = _Pending(request=request, images_jpeg=images)
        self._pump()

    def cancel(self, query_id: str, heard_chars: int = 0) -> bool:
        """End a query here (barge-in, or the caller gave up); tell the gateway if the
        query is on the wire. False if the query had already ended."""
        pending = self._pending.pop(query_id, None)
        if pending is None:
            return False
        self._end(query_id)
        if pending.on_wire and self.state is State.OPEN:
            self._send(CancelQuery(query_id=query_id, heard_chars=heard_chars))
        self._pump()
        return True

    def _end(self, query_id: str) -> None:
        self._ended[query_id] = None
        while len(self._ended) > self._remember:
            self._ended.popitem(last=False)

    def _pump(self) -> None:
        """Send waiting queries while the gateway's in-flight limit allows."""
        if self.state is not State.OPEN:
            return
        on_wire = sum(1 for p in self._pending.values() if p.on_wire)
        for pending in self._pending.values():
            if on_wire >= self._server_max_in_flight:
                return
            if pending.on_wire:
                continue
            resume_from = len(pending.text) if pending.sent_once else 0
            self._send(dataclasses.replace(pending.request, resume_from=resume_from))
            for index, jpeg in enumerate(pending.images_jpeg):
                self._send(Keyframe(query_id=pending.request.query_id, index=index, jpeg=jpeg))
            pending.on_wire = pending.sent_once = True
            on_wire += 1

    def receive_text(self, data: str, now_s: float) -> list[ClientEvent]:
        return self._receive(data, now_s)

    def receive_bytes(self, data: bytes, now_s: float) -> list[ClientEvent]:
        return self._receive(data, now_s)

    def _receive(self, data: str | bytes, now_s: float) -> list[ClientEvent]:
        message = self._decode(data, now_s)
        gaps: list[ClientEvent] = [*self._take_gaps()]
        if message is None or isinstance(message, ProtocolViolation):
            return gaps + ([message] if message else [])
        return gaps + self._handle(message)

    def _handle(self, message: Message) -> list[ClientEvent]:
        if isinstance(message, ErrorMessage):
            return self._on_error(message)
        if self.state is State.CONNECTING:
            if not isinstance(message, SessionStarted):
                return [self._violation(ErrorCode.UNEXPECTED_MESSAGE,
                                        f"{message.TYPE} before session")]
            self.state = State.OPEN
            self.session_id = message.session_id
            self.resume_handle = message.resume_handle
            self._server_max_in_flight = message.max_queries_in_flight
            self._pump()
            return [SessionOpened(started=message)]
        if isinstance(message, AnswerDelta):
            return self._on_delta(message)
        if isinstance(message, AnswerDone):
            return self._on_done(message)
        if isinstance(message, AnswerReset):
            pending = self._pending.get(message.query_id)
            if pending is None:
                return []
            dropped, pending.text = len(pending.text), ""
            return [AnswerRestarted(query_id=message.query_id, discarded_chars=dropped)]
        if isinstance(message, GoingAway):
            return [GoingAwayReceived(going_away=message)]
        return [self._violation(ErrorCode.UNEXPECTED_MESSAGE,
                                f"{message.TYPE} is not expected now")]

    def _on_delta(self, delta: AnswerDelta) -> list[ClientEvent]:
        pending = self._pending.get(delta.query_id)
        if pending is None:
            return []  # ended here already (cancelled, timed out): late text is dropped
        have = len(pending.text)
        if delta.offset > have:
            return [self._violation(ErrorCode.BAD_OFFSET,
                                    f"delta at {delta.offset}, have {have} chars")]
        new = delta.text[have - delta.offset:]
        if not new:
            return []
        pending.text += new
        return [DeltaReceived(query_id=delta.query_id, text=new, offset=have)]

    def _on_done(self, done: AnswerDone) -> list[ClientEvent]:
        pending = self._pending.pop(done.query_id, None)
        if pending is None:
            return []
        self._end(done.query_id)
        events: list[ClientEvent] = []
        if done.text.startswith(pending.text) and len(done.text) > len(pending.text):
            tail = done.text[len(pending.text):]
            events.append(DeltaReceived(query_id=done.query_id, text=tail,
                                        offset=len(pending.text)))
        events.append(AnswerFinished(done=done))
        self._pump()
        return events

    def _on_error(self, error: ErrorMessage) -> list[ClientEvent]:
        if error.query_id and error.query_id in self._pending:
            del self._pending[error.query_id]
            self._end(error.query_id)
            self._pump()
            return [QueryFailed(query_id=error.query_id, code=error.code, message=error.message)]
        return [ErrorReceived(error=error)]

    def connection_lost(self, code: int, reason: str) -> list[ClientEvent]:
        """The transport closed (``code`` 1006 when it just dropped)."""
        self.state = State.CLOSED
        for pending in self._pending.values():
            pending.on_wire = False
        if code in NO_RETRY:
            self.resume_handle = ""
        return [Disconnected(code=code, reason=reason, retry=code not in NO_RETRY)]

    def fail_all(self, code: str, message: str) -> list[ClientEvent]:
        """End every waiting query (e.g. the gateway refused the device)."""
        events: list[ClientEvent] = []
        for qid in list(self._pending):
            del self._pending[qid]
            self._end(qid)
            events.append(QueryFailed(query_id=qid, code=code, message=message))
        return events
