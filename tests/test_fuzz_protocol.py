"""Fuzzing the decoder: thousands of random and mutated messages against the sans-I/O
core, and a few hundred against a live gateway while another session keeps asking.
The core never raises; the gateway answers with protocol errors (or closes that
connection with a documented code) and never crashes; other sessions continue."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.aio import TOKENS, cloud_config, gateway_config
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection as SyncWebSocket
from websockets.sync.client import connect as sync_connect

from glasses_agent.edge.client import EdgeClient
from glasses_agent.gateway import Gateway
from glasses_agent.gateway.reasoning import DelayBackend
from glasses_agent.protocol import (
    AnswerDelta,
    AnswerDone,
    AnswerReset,
    CancelQuery,
    ClientConnection,
    Close,
    CloseCode,
    ErrorMessage,
    Facts,
    GoingAway,
    Hello,
    Keyframe,
    Limits,
    Location,
    Message,
    Ping,
    Pong,
    QueryRequest,
    SeenBarcode,
    SeenLabel,
    ServerConnection,
    SessionStarted,
    State,
    decode,
    encode,
)
from glasses_agent.protocol.messages import CLIENT_MESSAGES, SERVER_MESSAGES

LIMITS = Limits(max_message_bytes=64 * 1024, max_queries_in_flight=3, max_errors=1000)
DOCUMENTED_CLOSES = {
    CloseCode.GOING_AWAY, CloseCode.MESSAGE_TOO_BIG, CloseCode.INTERNAL_ERROR,
    CloseCode.BAD_HANDSHAKE, CloseCode.UNAUTHORIZED, CloseCode.UNSUPPORTED_VERSION,
    CloseCode.HEARTBEAT_TIMEOUT, CloseCode.TOO_MANY_ERRORS, CloseCode.SESSION_REPLACED,
    CloseCode.TOO_SLOW, CloseCode.PROTOCOL_ERROR, CloseCode.INVALID_DATA,
}

# --- strategies -----------------------------------------------------------------------------

query_ids = st.from_regex(r"[A-Za-z0-9._:-]{1,12}", fullmatch=True)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
short_text = st.text(max_size=20)
facts = st.builds(
    Facts,
    labels=st.lists(st.builds(SeenLabel, name=short_text, score=st.floats(0.0, 1.0)),
                    max_size=3).map(tuple),
    text=st.lists(short_text, max_size=3).map(tuple),
    barcodes=st.lists(st.builds(SeenBarcode, type=short_text, data=short_text),
                      max_size=2).map(tuple),
    people_in_view=st.integers(0, 5),
    location=st.none() | st.builds(Location, lat=st.floats(-90.0, 90.0),
                                   lon=st.floats(-180.0, 180.0)),
    intent=st.sampled_from(["", "identify", "read_text", "other"]),
    extra=st.dictionaries(st.text(min_size=1, max_size=8), short_text, max_size=2),
)
jpegs = st.binary(max_size=64).map(lambda b: b"\xff\xd8" + b)

client_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(Hello, token=st.text(max_size=12), resume=st.text(max_size=8)),
    st.builds(QueryRequest, query_id=query_ids, text=st.text(max_size=40), facts=facts,
              images=st.integers(0, 2), contemplate=st.booleans(),
              max_tokens=st.integers(1, 4096), resume_from=st.integers(0, 100)),
    st.builds(CancelQuery, query_id=query_ids, heard_chars=st.integers(0, 100)),
    st.builds(Keyframe, query_id=query_ids, index=st.integers(0, 1), jpeg=jpegs),
    st.builds(Ping, ping_id=st.integers(0, 2**32 - 1)),
    st.builds(Pong, ping_id=st.integers(0, 2**32 - 1)),
)
server_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(SessionStarted, session_id=st.text(max_size=8), resume_handle=st.text(max_size=8),
              resumed=st.booleans(), max_queries_in_flight=st.integers(1, 8)),
    st.builds(AnswerDelta, query_id=query_ids, text=st.text(max_size=20),
              offset=st.integers(0, 50)),
    st.builds(AnswerReset, query_id=query_ids),
    st.builds(AnswerDone, query_id=query_ids, text=st.text(max_size=30),
              prompt_tokens=st.integers(0, 99), replayed=st.booleans()),
    st.builds(ErrorMessage, code=st.text(min_size=1, max_size=10), message=st.text(max_size=10),
              query_id=st.just("") | query_ids, fatal=st.booleans()),
    st.builds(GoingAway, reconnect_after_s=st.floats(0, 10)),
    st.builds(Ping, ping_id=st.integers(0, 99)),
    st.builds(Pong, ping_id=st.integers(0, 99)),
)


@st.composite
def mutated(draw: st.DrawFn, messages: st.SearchStrategy[Message]) -> str | bytes:
    """A valid message, then one or two mutations at the JSON or the byte level."""
    data = encode(draw(messages), draw(st.integers(1, 40)))
    for _ in range(draw(st.integers(1, 2))):
        kind = draw(st.sampled_from(["field", "drop", "type", "cut", "byte", "escape"]))
        if isinstance(data, bytes):
            if kind in ("cut", "drop") or not data:
                data = data[:draw(st.integers(0, len(data)))]
            else:
                i = draw(st.integers(0, len(data) - 1))
                data = data[:i] + bytes([draw(st.integers(0, 255))]) + data[i + 1:]
            continue
        if kind in ("field", "drop", "type"):
            try:
                obj = json.loads(data)
            except ValueError:
                continue
            key = draw(st.sampled_from(sorted(obj)))
            if kind == "field":
                obj[key] = draw(json_values)
            elif kind == "drop":
                del obj[key]
            else:
                obj["type"] = draw(st.sampled_from(sorted({*CLIENT_MESSAGES, *SERVER_MESSAGES}))
                                   | st.text(max_size=6))
            data = json.dumps(obj)
        elif kind == "cut":
            data = data[:draw(st.integers(0, len(data)))]
        elif kind == "escape":
            data = data.replace('"text":"', '"text":"\\ud83d', 1)
        else:
            i = draw(st.integers(0, max(0, len(data) - 1)))
            data = data[:i] + draw(st.characters()) + data[i + 1:]
    return data


def noise() -> st.SearchStrategy[str | bytes]:
    return st.one_of(
        st.text(max_size=80),
        st.binary(max_size=80),
        json_values.map(json.dumps),
        st.binary(max_size=40).map(lambda b: b"GA\x01\x01" + b),
    )


def fuzz(messages: st.SearchStrategy[Message]) -> st.SearchStrategy[str | bytes]:
    return st.one_of(noise(), mutated(messages), messages.map(lambda m: encode(m, 2)))


# --- the sans-I/O core ----------------------------------------------------------------------


def _check_output(items: list[Any], types: Any) -> None:
    for n, item in enumerate(items):
        if isinstance(item, Close):
            assert n == len(items) - 1
            assert item.code in DOCUMENTED_CLOSES
        else:
            decode(item, types)  # everything we send is valid protocol


@settings(max_examples=700, deadline=None)
@given(st.lists(fuzz(client_messages), max_size=12), st.booleans())
def test_server_core_never_raises(inputs: list[str | bytes], hello_first: bool) -> None:
    server = ServerConnection(LIMITS, 0.0)
    if hello_first:
        server.receive_text(encode(Hello(token="t"), 1), 0.0)  # type: ignore[arg-type]
        server.accept(session_id="s", resume_handle="h", resumed=False)
    for n, data in enumerate(inputs):
        if isinstance(data, str):
            events = server.receive_text(data, float(n))
        else:
            events = server.receive_bytes(data, float(n))
        for event in events:
            if type(event).__name__ == "HelloReceived" and server.state is State.CONNECTING:
                server.accept(session_id="s", resume_handle="h", resumed=False)
            if type(event).__name__ == "QueryReceived":
                qid = event.request.query_id  # type: ignore[union-attr]
                server.send_delta(qid, "ok", 0)
                server.send_done(AnswerDone(query_id=qid, text="ok"))
        server.tick(float(n))
    _check_output(server.data_to_send(), SERVER_MESSAGES)


@settings(max_examples=700, deadline=None)
@given(st.lists(fuzz(server_messages), max_size=12))
def test_client_core_never_raises_and_ends_each_query_once(inputs: list[str | bytes]) -> None:
    client = ClientConnection(token="t", limits=LIMITS)
    for qid in ("a", "b", "0"):
        client.ask(QueryRequest(query_id=qid, text="x"))
    client.start(0.0)
    client.receive_text(encode(SessionStarted(session_id="s", resume_handle="h"), 1), 0.0)  # type: ignore[arg-type]
    ended: list[str] = []
    for n, data in enumerate(inputs):
        if isinstance(data, str):
            events = client.receive_text(data, float(n))
        else:
            events = client.receive_bytes(data, float(n))
        for event in events:
            name = type(event).__name__
            if name == "AnswerFinished":
                ended.append(event.done.query_id)  # type: ignore[union-attr]
            elif name == "QueryFailed":
                ended.append(event.query_id)  # type: ignore[union-attr]
    assert len(ended) == len(set(ended))
    assert set(ended).isdisjoint(client.pending)
    _check_output(client.data_to_send(), CLIENT_MESSAGES)


@settings(max_examples=500, deadline=None)
@given(st.one_of(client_messages, server_messages), st.integers(1, 2**32 - 1))
def test_valid_messages_round_trip(message: Message, seq: int) -> None:
    types = SERVER_MESSAGES if isinstance(message, SessionStarted | AnswerDelta | AnswerReset
                                          | AnswerDone | GoingAway) else CLIENT_MESSAGES
    got_seq, got = decode(encode(message, seq), types)
    assert got_seq == seq
    if isinstance(message, Keyframe):
        assert isinstance(got, Keyframe) and (got.query_id, got.index, got.jpeg) == (
            message.query_id, message.index, message.jpeg)
    else:
        assert got == message


# --- a live gateway -------------------------------------------------------------------------


class LiveGateway:
    """A gateway on its own event loop in a thread, so a synchronous fuzzer can drive it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        # The steady session asks back to back: no rate limit here (tests/test_hostile.py).
        self.gateway = Gateway(gateway_config(max_message_bytes=64 * 1024,
                                              device_queries_per_min=1e6, device_burst=1000),
                               backend=DelayBackend(deltas=3, delay_per_delta_s=0.001),
                               tokens=TOKENS)
        self.call(self.gateway.start())
        self.ws: SyncWebSocket | None = None
        self.closes: list[int | None] = []
        self.errors: list[str] = []

    def call(self, coro: Any, timeout_s: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def connect(self, hello: bool = True) -> SyncWebSocket:
        ws = sync_connect(self.gateway.url, proxy=None, compression=None, open_timeout=20,
                          close_timeout=2, max_size=None, legacy=True)
        if hello:
            ws.send(encode(Hello(token="tok-1"), 1))
            assert json.loads(ws.recv(timeout=20))["type"] == "session.started"
        return ws

    def drain(self, ws: SyncWebSocket, wait_s: float = 0.0) -> bool:
        """Read what the gateway sent; False once it closed the connection."""
        try:
            while True:
                data = ws.recv(timeout=wait_s)
                obj = json.loads(data)
                assert isinstance(obj, dict) and "type" in obj
                if obj["type"] == "error":
                    self.errors.append(obj["code"])
        except TimeoutError:
            return True
        except ConnectionClosed:
            self.closes.append(ws.close_code)
            return False

    def send(self, data: str | bytes, *, first: bool) -> None:
        if first:  # a fresh connection whose very first message is the fuzz
            ws = self.connect(hello=False)
            try:
                ws.send(data)
            except ConnectionClosed:
                pass
            self.drain(ws, wait_s=5.0)
            ws.close()
            return
        if self.ws is None:
            self.ws = self.connect()
        try:
            self.ws.send(data)
        except ConnectionClosed:
            pass
        if not self.drain(self.ws):
            self.ws = None

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
        self.call(self.gateway.shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def live() -> Iterator[LiveGateway]:
    gateway = LiveGateway()
    try:
        yield gateway
    finally:
        gateway.close()


async def _steady_session(url: str, stop: asyncio.Event) -> int:
    answered = 0
    async with EdgeClient(cloud_config(url, token="tok-2")) as client:
        while not stop.is_set():
            answer = await client.ask(f"steady {answered}").result()
            assert answer.text == f"You asked: steady {answered}"
            answered += 1
    return answered


def test_live_gateway_survives_fuzzing_and_other_sessions_go_on(live: LiveGateway) -> None:
    stop = asyncio.Event()
    steady = asyncio.run_coroutine_threadsafe(_steady_session(live.gateway.url, stop), live.loop)
    big = st.integers(64 * 1024 + 1, 150_000).map(lambda n: "x" * n)

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(fuzz(client_messages), big), st.integers(0, 9))
    def one(data: str | bytes, dice: int) -> None:
        live.send(data, first=dice == 0)

    one()
    live.loop.call_soon_threadsafe(stop.set)
    assert steady.result(60) > 0  # the other session was answered all along
    assert set(live.closes) <= DOCUMENTED_CLOSES
    assert live.errors  # malformed input was answered with protocol errors
    ws = live.connect()  # and the gateway still takes new sessions and answers
    ws.send(encode(QueryRequest(query_id="after", text="still up?"), 2))
    while True:
        obj = json.loads(ws.recv(timeout=20))
        if obj["type"] == "answer.done":
            assert obj["text"] == "You asked: still up?"
            break
    ws.close()
