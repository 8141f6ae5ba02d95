"""The sans-I/O protocol core: bytes in -> events out, calls in -> bytes out. No sockets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from glasses_agent.protocol import (
    PROTOCOL_VERSION,
    AnswerDelta,
    AnswerDone,
    AnswerFinished,
    AnswerReset,
    AnswerRestarted,
    CancelQuery,
    CancelReceived,
    ClientConnection,
    Close,
    CloseCode,
    DeltaReceived,
    Disconnected,
    ErrorMessage,
    Facts,
    GoingAway,
    GoingAwayReceived,
    Hello,
    HelloReceived,
    Keyframe,
    Limits,
    Message,
    Outgoing,
    Ping,
    Pong,
    ProtocolError,
    ProtocolViolation,
    QueryFailed,
    QueryReceived,
    QueryRequest,
    SeenLabel,
    ServerConnection,
    SessionOpened,
    SessionStarted,
    State,
    decode,
    encode,
)
from glasses_agent.protocol.messages import BINARY_HEADER, CLIENT_MESSAGES, SERVER_MESSAGES

JPEG = b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4

LIMITS = Limits(heartbeat_s=1.0, max_queries_in_flight=2, max_message_bytes=64 * 1024)


def _feed(items: list[Outgoing], conn: ClientConnection | ServerConnection,
          now_s: float = 0.0) -> list[object]:
    events: list[object] = []
    for item in items:
        if isinstance(item, Close):
            continue
        if isinstance(item, str):
            events += conn.receive_text(item, now_s)
        else:
            events += conn.receive_bytes(item, now_s)
    return events


def _pair(now_s: float = 0.0) -> tuple[ClientConnection, ServerConnection]:
    client = ClientConnection(token="tok", limits=LIMITS)
    server = ServerConnection(LIMITS, now_s)
    client.start(now_s)
    events = _feed(client.data_to_send(), server, now_s)
    assert events == [HelloReceived(hello=Hello(token="tok"))]
    server.accept(session_id="s-1", resume_handle="h-1", resumed=False)
    opened = _feed(server.data_to_send(), client, now_s)
    assert isinstance(opened[0], SessionOpened)
    assert client.state is State.OPEN and server.state is State.OPEN
    return client, server


def _types(items: list[Outgoing]) -> list[str]:
    return [json.loads(i)["type"] if isinstance(i, str) else type(i).__name__ for i in items]


# --- codecs ---------------------------------------------------------------------------------

ALL_MESSAGES = [
    Hello(token="t", resume="h", client="x/1"),
    QueryRequest(query_id="q.1", text="what is this?",
                 facts=Facts(labels=(SeenLabel(name="cup", score=0.5),), intent="identify",
                             local_time="2026-11-03T14:05:00+01:00"),
                 images=2, contemplate=True, max_tokens=64, resume_from=3),
    CancelQuery(query_id="q:1", heard_chars=12),
    Ping(ping_id=7),
    Pong(ping_id=7),
    SessionStarted(session_id="s", resume_handle="h", resumed=True, heartbeat_s=2.5,
                   max_message_bytes=1000, max_queries_in_flight=3),
    AnswerDelta(query_id="q", text="Hé 🙂", offset=4),
    AnswerReset(query_id="q"),
    AnswerDone(query_id="q", text="Hello", prompt_tokens=3, completion_tokens=2,
               usage_estimated=True, first_delta_ms=1.5, total_ms=9.25, replayed=True,
               cancelled=True, heard_chars=2),
    ErrorMessage(code="busy", message="m", query_id="q", fatal=False),
    ErrorMessage(code="unauthorized", message="m", fatal=True),
    GoingAway(reason="bye", reconnect_after_s=0.5),
]


@pytest.mark.parametrize("message", ALL_MESSAGES, ids=lambda m: type(m).__name__)
def test_every_message_round_trips(message: Message) -> None:
    types = CLIENT_MESSAGES if message.TYPE in CLIENT_MESSAGES else SERVER_MESSAGES
    data = encode(message, 5)
    assert isinstance(data, str)
    obj = json.loads(data)
    assert obj["type"] == message.TYPE and obj["seq"] == 5
    assert decode(data, types) == (5, message)


def test_keyframe_is_binary_with_a_small_header() -> None:
    data = encode(Keyframe(query_id="q-1", index=1, jpeg=JPEG), 9)
    assert isinstance(data, bytes)
    assert data.startswith(b"GA\x01\x01") and len(data) == 12 + 3 + len(JPEG)
    seq, frame = decode(data, CLIENT_MESSAGES)
    assert seq == 9 and isinstance(frame, Keyframe)
    assert (frame.query_id, frame.index, frame.jpeg) == ("q-1", 1, JPEG)


@pytest.mark.parametrize("data, code", [
    ("{", "bad_message"),
    ("[1, 2]", "bad_message"),
    ('{"seq": 1}', "bad_message"),
    ('{"type": "nope", "seq": 1}', "unknown_type"),
    ('{"type": "ping", "seq": 0, "ping_id": 1}', "bad_message"),
    ('{"type": "ping", "seq": true, "ping_id": 1}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a b", "text": "x"}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": 5}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", "images": 3}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "\\ud800"}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", "facts": []}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", "facts": {"labels": "cup"}}',
     "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", '
     '"facts": {"labels": [{"name": 3, "score": 0.5}]}}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", '
     '"facts": {"labels": [{"name": "cup", "score": 7}]}}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", '
     '"facts": {"local_time": "yesterday"}}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", '
     '"facts": {"local_time": "2026-11-03T14:05:00"}}', "bad_message"),
    ('{"type": "query", "seq": 1, "query_id": "a", "text": "x", '
     '"facts": {"location": {"lat": 91, "lon": 0}}}', "bad_message"),
    ('{"type": "ping", "seq": 1, "ping_id": NaN}', "bad_message"),
    ("[" * 100_000 + "]" * 100_000, "bad_message"),
    (b"GA", "bad_message"),
    (b"XX\x01\x01\x00\x00\x00\x01\x00\x00\x00\x01q\xff\xd8", "bad_message"),
    (b"GA\x01\x01\x00\x00\x00\x01\x00\x00\x00\x01qnotjpeg", "bad_image"),
    (b"GA\x01\x01\x00\x00\x00\x01\x05\x00\x00\x01q\xff\xd8", "too_many_images"),
    (b"GA\x01\x01\x00\x00\x00\x01\x00\x00\x00\x09q\xff\xd8", "bad_message"),
])
def test_bad_messages_raise_a_protocol_error_with_a_code(data: str | bytes, code: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(data, CLIENT_MESSAGES)
    assert info.value.code == code


def test_binary_messages_do_not_go_to_the_edge() -> None:
    with pytest.raises(ProtocolError, match="binary"):
        decode(encode(Keyframe(query_id="q", index=0, jpeg=JPEG), 1), SERVER_MESSAGES)


# --- handshake ------------------------------------------------------------------------------


def test_handshake_and_a_streamed_answer() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q1", text="hi", facts=Facts(text=("EXIT",))), [JPEG])
    events = _feed(client.data_to_send(), server)
    assert len(events) == 1 and isinstance(events[0], QueryReceived)
    assert events[0].request.images == 1 and events[0].images_jpeg == (JPEG,)
    assert server.in_flight == {"q1"}
    server.send_delta("q1", "Hel", 0)
    events = _feed(server.data_to_send(), client)
    assert events == [DeltaReceived(query_id="q1", text="Hel", offset=0)]
    # Deltas the writer has not taken yet go as one.
    server.send_delta("q1", "lo", 3)
    server.send_delta("q1", ".", 5)
    server.send_done(AnswerDone(query_id="q1", text="Hello."))
    events = _feed(server.data_to_send(), client)
    assert [type(e).__name__ for e in events] == ["DeltaReceived", "AnswerFinished"]
    assert events[0] == DeltaReceived(query_id="q1", text="lo.", offset=3)
    assert client.pending == () and server.in_flight == frozenset()


def test_first_message_must_be_a_hello() -> None:
    server = ServerConnection(LIMITS, 0.0)
    events = server.receive_text(encode(Ping(ping_id=1), 1), 0.0)  # type: ignore[arg-type]
    assert isinstance(events[0], ProtocolViolation)
    out = server.data_to_send()
    assert _types(out) == ["error", "Close"]
    assert out[-1] == Close(code=CloseCode.BAD_HANDSHAKE, reason="bad_handshake")
    assert json.loads(out[0])["fatal"] is True  # type: ignore[arg-type]
    assert server.receive_text("anything", 1.0) == []  # closing: input is ignored


def test_wrong_protocol_version_is_refused_with_4002() -> None:
    server = ServerConnection(LIMITS, 0.0)
    server.receive_text(encode(Hello(token="t", protocol=PROTOCOL_VERSION + 1), 1), 0.0)  # type: ignore[arg-type]
    out = server.data_to_send()
    assert json.loads(out[0])["code"] == "unsupported_version"  # type: ignore[arg-type]
    assert out[-1] == Close(code=CloseCode.UNSUPPORTED_VERSION, reason="unsupported_version")


def test_refuse_sends_an_error_then_the_close_code() -> None:
    server = ServerConnection(LIMITS, 0.0)
    server.receive_text(encode(Hello(token="bad"), 1), 0.0)  # type: ignore[arg-type]
    server.refuse(code="unauthorized", message="wrong token", close_code=CloseCode.UNAUTHORIZED)
    out = server.data_to_send()
    assert _types(out) == ["error", "Close"]
    assert out[-1] == Close(code=4001, reason="unauthorized")


def test_oversized_message_closes_with_1009() -> None:
    client, server = _pair()
    big = encode(QueryRequest(query_id="q", text="x" * 8000,
                              facts=Facts(extra={"pad": "y" * 70_000})), 2)
    events = server.receive_text(big, 0.0)  # type: ignore[arg-type]
    assert events[0] == ProtocolViolation(code="message_too_big", message=events[0].message)  # type: ignore[union-attr]
    out = server.data_to_send()
    assert out[-1] == Close(code=CloseCode.MESSAGE_TOO_BIG, reason="message_too_big")


def test_handshake_timeout_and_heartbeats() -> None:
    server = ServerConnection(LIMITS, 0.0)
    assert server.next_tick_s == LIMITS.handshake_timeout_s
    server.tick(LIMITS.handshake_timeout_s)
    assert server.data_to_send()[-1] == Close(code=CloseCode.BAD_HANDSHAKE,
                                              reason="handshake_timeout")

    client, server = _pair(now_s=100.0)
    server.tick(100.5)
    assert server.data_to_send() == []
    server.tick(101.0)  # one heartbeat: a ping, answered by a pong
    ping = server.data_to_send()
    assert _types(ping) == ["ping"]
    assert _feed(ping, client, 101.0) == []
    pong = client.data_to_send()
    assert _types(pong) == ["pong"]
    _feed(pong, server, 101.1)
    server.tick(103.0)  # silent for 1.9 s < 3 heartbeats: another ping only
    assert _types(server.data_to_send()) == ["ping"]
    server.tick(104.2)  # 3.1 s of silence
    out = server.data_to_send()
    assert out[-1] == Close(code=CloseCode.HEARTBEAT_TIMEOUT, reason="heartbeat_timeout")


def test_sequence_gaps_are_reported_and_the_message_still_handled() -> None:
    client, server = _pair()
    events = server.receive_text(encode(QueryRequest(query_id="q", text="x"), 7), 0.0)  # type: ignore[arg-type]
    assert events[0] == ProtocolViolation(code="bad_sequence", message="seq 7, expected 2")
    assert isinstance(events[1], QueryReceived)  # nothing lost
    assert _types(server.data_to_send()) == ["error"]
    # back in step with the peer's numbering after the report
    assert server.receive_text(encode(Ping(ping_id=2), 8), 0.0) == []  # type: ignore[arg-type]


def test_too_many_bad_messages_close_the_connection() -> None:
    client, server = _pair()
    for _ in range(LIMITS.max_errors):
        assert server.state is State.OPEN
        server.receive_text("garbage", 0.0)
    server.receive_text("garbage", 0.0)
    assert server.state is State.CLOSING
    assert server.data_to_send()[-1] == Close(code=CloseCode.TOO_MANY_ERRORS,
                                              reason="too_many_errors")


# --- queries on the gateway side ------------------------------------------------------------


def test_in_flight_limit_answers_busy_and_drops_the_refused_keyframes() -> None:
    client, server = _pair()
    seq = 1
    def send(message: object) -> list[object]:
        nonlocal seq
        seq += 1
        data = encode(message, seq)  # type: ignore[arg-type]
        return server.receive_text(data, 0.0) if isinstance(data, str) else \
            server.receive_bytes(data, 0.0)  # type: ignore[return-value]
    send(QueryRequest(query_id="a", text="1"))
    send(QueryRequest(query_id="b", text="2"))
    server.data_to_send()
    assert send(QueryRequest(query_id="c", text="3", images=1)) == []
    out = server.data_to_send()
    error = json.loads(out[0])  # type: ignore[arg-type]
    assert (error["code"], error["query_id"]) == ("busy", "c")
    assert send(Keyframe(query_id="c", index=0, jpeg=JPEG)) == []  # silently dropped
    assert server.data_to_send() == []
    assert send(QueryRequest(query_id="a", text="1"))[0] == ProtocolViolation(
        code="duplicate_query", message="query a is already being answered")
    assert send(Keyframe(query_id="zz", index=0, jpeg=JPEG))[0].code == "unexpected_image"  # type: ignore[attr-defined]


def test_cancel_reaches_the_gateway_with_what_was_heard() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q", text="tell me a story"))
    _feed(client.data_to_send(), server)
    server.send_delta("q", "Once upon", 0)
    _feed(server.data_to_send(), client)
    assert client.cancel("q", heard_chars=4) is True
    assert client.cancel("q") is False
    events = _feed(client.data_to_send(), server)
    assert events == [CancelReceived(query_id="q", heard_chars=4)]
    # the gateway's final done is dropped: the query already ended on the edge
    server.send_done(AnswerDone(query_id="q", text="Once upon", cancelled=True, heard_chars=4))
    assert _feed(server.data_to_send(), client) == []


def test_cancel_while_keyframes_are_still_coming_ends_the_query() -> None:
    client, server = _pair()
    server.receive_text(encode(QueryRequest(query_id="q", text="x", images=2), 2), 0.0)  # type: ignore[arg-type]
    server.receive_text(encode(CancelQuery(query_id="q"), 3), 0.0)  # type: ignore[arg-type]
    out = server.data_to_send()
    assert json.loads(out[0])["cancelled"] is True  # type: ignore[arg-type]
    assert server.in_flight == frozenset()


# --- the edge side across reconnects --------------------------------------------------------


def test_queries_wait_for_the_session_and_respect_the_gateway_limit() -> None:
    client = ClientConnection(token="tok", limits=LIMITS)
    for i in range(3):
        client.ask(QueryRequest(query_id=f"q{i}", text="x"))
    assert client.data_to_send() == []  # not connected yet: they wait
    client.start(0.0)
    server = ServerConnection(LIMITS, 0.0)
    _feed(client.data_to_send(), server)
    server.accept(session_id="s", resume_handle="h", resumed=False)
    _feed(server.data_to_send(), client)
    sent = _feed(client.data_to_send(), server)
    assert [e.request.query_id for e in sent] == ["q0", "q1"]  # type: ignore[attr-defined]
    server.send_done(AnswerDone(query_id="q0", text="a"))
    _feed(server.data_to_send(), client)
    sent = _feed(client.data_to_send(), server)
    assert [e.request.query_id for e in sent] == ["q2"]  # type: ignore[attr-defined]


def test_resume_resends_with_the_characters_already_received_and_dedupes() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q", text="x"), [JPEG])
    _feed(client.data_to_send(), server)
    server.send_delta("q", "Hello", 0)
    _feed(server.data_to_send(), client)
    assert client.received_text("q") == "Hello"
    assert client.connection_lost(1006, "") == [Disconnected(code=1006, reason="", retry=True)]

    client.start(5.0)
    server2 = ServerConnection(LIMITS, 5.0)
    hello = _feed(client.data_to_send(), server2, 5.0)
    assert hello == [HelloReceived(hello=Hello(token="tok", resume="h-1"))]
    server2.accept(session_id="s-1", resume_handle="h-1", resumed=True)
    _feed(server2.data_to_send(), client, 5.0)
    resent = _feed(client.data_to_send(), server2, 5.0)
    assert isinstance(resent[0], QueryReceived)
    assert resent[0].request.resume_from == 5 and resent[0].images_jpeg == (JPEG,)
    # the gateway sends overlapping text: only the new part comes out, once
    server2.send_delta("q", "lo, wor", 3)
    server2.send_delta("q", "lo, wor", 3)
    server2.send_done(AnswerDone(query_id="q", text="Hello, world"))
    server2.send_done(AnswerDone(query_id="q", text="Hello, world"))  # ignored: not in flight
    events = _feed(server2.data_to_send(), client, 5.0)
    assert events[:2] == [DeltaReceived(query_id="q", text=", wor", offset=5),
                          DeltaReceived(query_id="q", text="ld", offset=10)]
    assert [type(e) for e in events[2:]] == [AnswerFinished]


def test_a_replayed_answer_arrives_as_one_done_and_a_duplicate_done_is_dropped() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q", text="x"))
    _feed(client.data_to_send(), server)
    done = encode(AnswerDone(query_id="q", text="Stored answer", replayed=True), 2)
    events = client.receive_text(done, 0.0)  # type: ignore[arg-type]
    assert events[0] == DeltaReceived(query_id="q", text="Stored answer", offset=0)
    assert isinstance(events[1], AnswerFinished) and events[1].done.replayed
    assert client.receive_text(encode(AnswerDone(query_id="q", text="again"), 3), 0.0) == []  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already used"):
        client.ask(QueryRequest(query_id="q", text="x"))


def test_reset_drops_the_text_of_the_lost_run() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q", text="x"))
    _feed(client.data_to_send(), server)
    server.send_delta("q", "First", 0)
    server.send_reset("q")
    server.send_delta("q", "Second", 0)
    events = _feed(server.data_to_send(), client)
    assert events == [DeltaReceived(query_id="q", text="First", offset=0),
                      AnswerRestarted(query_id="q", discarded_chars=5),
                      DeltaReceived(query_id="q", text="Second", offset=0)]


def test_query_errors_end_one_query_and_fatal_errors_stop_retrying() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q", text="x"))
    _feed(client.data_to_send(), server)
    server.send_query_error("q", "backend_unavailable", "no model")
    assert _feed(server.data_to_send(), client) == [
        QueryFailed(query_id="q", code="backend_unavailable", message="no model")]
    assert client.connection_lost(CloseCode.UNAUTHORIZED, "unauthorized")[0].retry is False  # type: ignore[union-attr]
    assert client.resume_handle == ""


def test_going_away_is_reported() -> None:
    client, server = _pair()
    server.going_away(reason="deploy", reconnect_after_s=0.25)
    out = server.data_to_send()
    assert out[-1] == Close(code=CloseCode.GOING_AWAY, reason="going_away")
    assert _feed(out, client) == [GoingAwayReceived(going_away=GoingAway(
        reason="deploy", reconnect_after_s=0.25))]


# --- a careless or hostile peer (tests/test_hostile.py attacks a live gateway) ------------


def _raw_query(server: ServerConnection, seq: int, message: Message, now_s: float = 0.0,
               ) -> list[object]:
    data = encode(message, seq)
    if isinstance(data, str):
        return list(server.receive_text(data, now_s))
    return list(server.receive_bytes(data, now_s))


def test_a_peer_that_does_not_read_is_closed_too_slow_not_queued_forever() -> None:
    limits = dataclasses.replace(LIMITS, max_send_queue=8, max_queries_in_flight=20)
    server = ServerConnection(limits, 0.0)
    server.receive_text(encode(Hello(token="t"), 1), 0.0)  # type: ignore[arg-type]
    server.accept(session_id="s", resume_handle="h", resumed=False)
    for i in range(20):
        _raw_query(server, i + 2, QueryRequest(query_id=f"q{i}", text="x"))
    for i in range(20):  # nobody takes what is queued: deltas of different queries pile up
        server.send_delta(f"q{i}", "piece", 0)
    out = server.data_to_send()
    assert _types(out) == ["error", "Close"]
    assert out[-1] == Close(code=CloseCode.TOO_SLOW, reason="too_slow")


def test_unsent_deltas_of_one_answer_and_pongs_coalesce() -> None:
    client, server = _pair()
    client.ask(QueryRequest(query_id="q", text="hi"))
    _feed(client.data_to_send(), server)
    for i in range(100):
        server.send_delta("q", "ab", 2 * i)
    for i in range(50):
        server.receive_text(encode(Ping(ping_id=i), 3 + i), 0.25 * i)  # type: ignore[arg-type]
    out = server.data_to_send()
    assert _types(out) == ["answer.delta", "pong"]
    assert json.loads(out[0])["text"] == "ab" * 100  # type: ignore[arg-type]
    assert json.loads(out[1])["ping_id"] == 49  # type: ignore[arg-type]


def test_a_ping_flood_is_counted_as_errors_and_closed() -> None:
    client, server = _pair()
    codes = []
    for i in range(200):  # all at one instant: a burst of 20 is allowed, the rest are errors
        for event in server.receive_text(encode(Ping(ping_id=i), 2 + i), 5.0):  # type: ignore[arg-type]
            codes.append(getattr(event, "code", ""))
    assert codes.count("rate_limited") == LIMITS.max_errors + 1
    assert server.data_to_send()[-1] == Close(code=CloseCode.TOO_MANY_ERRORS,
                                              reason="too_many_errors")


def test_a_refused_keyframe_ends_its_query_with_the_query_id() -> None:
    client, server = _pair()
    assert _raw_query(server, 2, QueryRequest(query_id="a", text="x", images=1)) == []
    notjpeg = BINARY_HEADER.pack(b"GA", 1, 1, 3, 0, 0, 1) + b"a" + b"\x89PNG"
    events = server.receive_bytes(notjpeg, 0.0)
    assert [getattr(e, "code", "") for e in events] == ["bad_image"]
    error = json.loads(server.data_to_send()[0])  # type: ignore[arg-type]
    assert (error["code"], error["query_id"]) == ("bad_image", "a")
    assert server.in_flight == frozenset()
    _raw_query(server, 4, QueryRequest(query_id="b", text="x", images=2))
    _raw_query(server, 5, Keyframe(query_id="b", index=0, jpeg=JPEG))
    _raw_query(server, 6, Keyframe(query_id="b", index=0, jpeg=JPEG))
    error = json.loads(server.data_to_send()[0])  # type: ignore[arg-type]
    assert (error["code"], error["query_id"]) == ("unexpected_image", "b")
    assert server.in_flight == frozenset()


def test_a_cancelled_query_frees_its_slot_at_once() -> None:
    client, server = _pair()  # the limit is 2 in flight
    for qid in ("a", "b"):
        client.ask(QueryRequest(query_id=qid, text="x"))
    _feed(client.data_to_send(), server)
    client.cancel("a")
    client.ask(QueryRequest(query_id="c", text="x"))  # the client sees a free slot ...
    events = _feed(client.data_to_send(), server)
    # ... and so does the gateway, though a's answer.done (cancelled) is not sent yet.
    assert [type(e).__name__ for e in events] == ["CancelReceived", "QueryReceived"]
    assert server.send_done(AnswerDone(query_id="a", text="", cancelled=True))


def test_asking_past_the_limit_counts_as_a_bad_message() -> None:
    client, server = _pair()
    for i in range(LIMITS.max_queries_in_flight + LIMITS.max_errors + 1):
        _raw_query(server, 2 + i, QueryRequest(query_id=f"q{i}", text="x", images=2))
    out = server.data_to_send()
    assert _types(out).count("error") == LIMITS.max_errors + 2  # the busy ones, then the close
    assert out[-1] == Close(code=CloseCode.TOO_MANY_ERRORS, reason="too_many_errors")
