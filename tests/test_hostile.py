"""A hostile or careless client against a real gateway process on 127.0.0.1.

Each defect found by attacking the gateway is a regression test here. The gateway
runs as a subprocess (its memory read from /proc before and after); the attacker
uses a plain TCP socket where the websocket library would hide what it does
(``support.rawsock``); and a well-behaved second device asks all along, its
answers counted and timed: an attack must not stall it. Longer soak runs of the
same attacks: ``benchmarks/bench_hostile.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support.aio import cloud_config, run
from support.gateway_proc import GatewayProcess
from support.rawsock import RawSocket

from glasses_agent.edge.client import EdgeClient
from glasses_agent.errors import BadInputError
from glasses_agent.gateway import TokenTable
from glasses_agent.protocol import CancelQuery, ErrorMessage, Keyframe, Ping, QueryRequest

JPEG_1MB = b"\xff\xd8\xff\xe0" + b"\x00" * 1_000_000  # within the 1 MiB message limit
FAST = ("gateway.heartbeat_s=1", "gateway.write_timeout_s=2", "gateway.orphan_grace_s=1")


@dataclass
class Steady:
    """The well-behaved device: asks, waits for the answer, asks again."""

    latencies_s: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def worst_s(self) -> float:
        return max(self.latencies_s, default=0.0)


@asynccontextmanager
async def steady_device(url: str, *, token: str = "tok-2", gap_s: float = 0.1
                        ) -> AsyncIterator[Steady]:
    steady = Steady()
    stop = asyncio.Event()

    async def ask_all_along() -> None:
        async with EdgeClient(cloud_config(url, token=token, answer_timeout_s=60)) as client:
            n = 0
            while not stop.is_set():
                start = time.monotonic()
                try:
                    answer = await client.ask(f"steady {n}").result()
                    assert answer.text == f"You asked: steady {n}"
                    steady.latencies_s.append(time.monotonic() - start)
                except Exception as exc:  # counted, and the test fails on it
                    steady.failures.append(repr(exc))
                n += 1
                await asyncio.sleep(gap_s)

    task = asyncio.create_task(ask_all_along())
    await asyncio.sleep(0.5)  # answered before the attack, too
    try:
        yield steady
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def attack(fn: Callable[[], Any]) -> Any:
    """Run a blocking attack (raw sockets) beside the event loop."""
    return await asyncio.to_thread(fn)


def started(gateway: GatewayProcess) -> GatewayProcess:
    gateway.start()
    return gateway


@pytest.fixture
def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    settings = getattr(request, "param", ())
    gw = started(GatewayProcess(tmp_path, devices=4, settings=FAST + tuple(settings),
                                answers_db=False))
    yield gw
    gw.kill()


# --- 1. a cancel right behind its query ---------------------------------------------------


def test_a_cancel_right_behind_its_query_ends_it_and_frees_its_slot(
        gateway: GatewayProcess) -> None:
    def pairs() -> list[dict[str, Any]]:
        raw = RawSocket(gateway.url)
        raw.hello("tok-1")
        endings = []
        for i in range(6):  # more than max_queries_in_flight (4): none may stay in flight
            qid = f"z{i}"
            raw.send(QueryRequest(query_id=qid, text="a question", images=2),
                     Keyframe(query_id=qid, index=0, jpeg=JPEG_1MB),
                     Keyframe(query_id=qid, index=1, jpeg=JPEG_1MB),
                     CancelQuery(query_id=qid, heard_chars=0))  # one TCP write
            endings.append(raw.recv_until("answer.done")[-1])
        raw.send(QueryRequest(query_id="after", text="still here?"))
        endings.append(raw.recv_until("answer.done")[-1])
        raw.close()
        again = RawSocket(gateway.url)  # a new session of the device re-sends z0
        again.hello("tok-1")
        again.send(QueryRequest(query_id="z0", text="a question"))
        endings.append(again.recv_json())
        again.close()
        return endings

    async def main() -> list[dict[str, Any]]:
        async with steady_device(gateway.url) as steady:
            endings: list[dict[str, Any]] = await attack(pairs)
        assert not steady.failures and steady.latencies_s
        return endings

    endings = run(main())
    assert [e["cancelled"] for e in endings[:6]] == [True] * 6
    assert endings[6]["text"] == "You asked: still here?" and not endings[6]["cancelled"]
    assert endings[7]["type"] == "answer.done" and endings[7]["replayed"] is True


def test_the_edge_client_asking_and_cancelling_at_once_is_not_left_busy(
        gateway: GatewayProcess) -> None:
    async def main() -> None:
        async with EdgeClient(cloud_config(gateway.url)) as client:
            replies = [client.ask(f"question {i}") for i in range(20)]
            for reply in replies:
                reply.cancel()
            answer = await client.ask("and now?").result()
            assert answer.text == "You asked: and now?"

    run(main())


def test_cancelled_queries_with_keyframes_free_their_memory(gateway: GatewayProcess) -> None:
    def sessions() -> None:
        for s in range(25):
            raw = RawSocket(gateway.url)
            raw.hello("tok-1")
            for i in range(4):
                qid = f"s{s}-{i}"
                raw.send(QueryRequest(query_id=qid, text="q", images=2),
                         Keyframe(query_id=qid, index=0, jpeg=JPEG_1MB),
                         Keyframe(query_id=qid, index=1, jpeg=JPEG_1MB),
                         CancelQuery(query_id=qid))
                raw.recv_until("answer.done")
            raw.close()

    sessions()  # the first round warms the allocator up
    before = gateway.rss_mb()
    sessions()  # 100 more queries, 200 MB of keyframes in all
    after = gateway.rss_mb()
    assert after - before < 60, f"{before:.0f} -> {after:.0f} MB"


# --- 2. a client that stops reading ---------------------------------------------------------


def test_a_ping_flood_is_closed_while_it_floods(gateway: GatewayProcess) -> None:
    raw = RawSocket(gateway.url)
    raw.hello("tok-1")
    start = time.monotonic()
    cut_off = False
    try:
        burst = 0
        while time.monotonic() - start < 8:  # pings as fast as it can, never reading
            raw.send(*[Ping(ping_id=burst * 100 + i) for i in range(100)])
            burst += 1
    except OSError:
        cut_off = True  # the gateway closed the connection under the flood
    assert cut_off, "the flood went on for 8 s"
    assert time.monotonic() - start < 8


@pytest.mark.parametrize("gateway", [("gateway.max_queries_in_flight=64",
                                      "gateway.device_queries_per_min=600000",
                                      "gateway.device_burst=100000",
                                      "gateway.backend_slots=64",
                                      "gateway.delay_deltas=1",
                                      "gateway.delay_per_delta_s=0")], indirect=True)
def test_a_client_that_stops_reading_is_cut_off_and_memory_stays_flat(
        gateway: GatewayProcess) -> None:
    def stop_reading() -> float | None:
        raw = RawSocket(gateway.url, rcvbuf=4096)
        raw.hello("tok-1")
        start = time.monotonic()
        n = 0
        try:
            while time.monotonic() - start < 12:  # asks (16 KB answers) and never reads
                raw.send(*[QueryRequest(query_id=f"big-{n + i}", text="x" * 7900)
                           for i in range(16)])
                n += 16
                time.sleep(0.02)
        except OSError:
            return time.monotonic() - start  # the gateway cut it off
        return None

    async def main() -> tuple[float | None, Steady]:
        async with steady_device(gateway.url) as steady:
            cut_after_s = await attack(stop_reading)
        return cut_after_s, steady

    before = gateway.rss_mb()
    cut_after_s, steady = run(main())
    after = gateway.rss_mb()
    assert cut_after_s is not None, "a client that never reads was kept for 12 s"
    assert after - before < 60, f"{before:.0f} -> {after:.0f} MB"
    assert not steady.failures
    assert steady.worst_s < 5.0, f"the other device waited {steady.worst_s:.1f} s"


def test_a_silent_client_is_closed_after_the_heartbeat(gateway: GatewayProcess) -> None:
    raw = RawSocket(gateway.url)
    raw.hello("tok-1")
    raw.send(QueryRequest(query_id="q", text="hello"))
    time.sleep(5.5)  # silence: 3 s heartbeat timeout, then at most the 2 s close
    assert raw.wait_closed(timeout_s=1.0) in ("closed", "eof", "reset")


# --- 3. one device must not starve another --------------------------------------------------


@pytest.mark.parametrize("gateway", [("gateway.delay_deltas=4",
                                      "gateway.delay_per_delta_s=0.05",
                                      "gateway.backend_slots=1")], indirect=True)
def test_a_device_that_queues_work_and_leaves_cannot_starve_another(
        gateway: GatewayProcess) -> None:
    def rounds() -> dict[str, int]:
        seen: dict[str, int] = {}
        for r in range(25):
            raw = RawSocket(gateway.url)
            raw.hello("tok-3")
            raw.send(*[QueryRequest(query_id=f"r{r}-{i}", text="w" * 96) for i in range(4)])
            raw.send(ErrorMessage(code="bye", message="x"))  # a little traffic, then gone
            try:
                reply = raw.recv_json(timeout_s=0.2)
                seen[reply.get("code", reply["type"])] = (
                    seen.get(reply.get("code", reply["type"]), 0) + 1)
            except TimeoutError:
                pass
            raw.close()
        return seen

    async def main() -> tuple[dict[str, int], Steady]:
        async with steady_device(gateway.url, gap_s=0.05) as steady:
            seen = await attack(rounds)
            await asyncio.sleep(3.0)  # the attacker's answers in the queue meanwhile
        return seen, steady

    seen, steady = run(main())
    assert not steady.failures
    # One generation is 0.2 s: the other device waits its turn behind at most one of the
    # attacker's, never behind the attacker's backlog (100 answers, 20 s).
    assert statistics.median(steady.latencies_s) < 1.5
    assert steady.worst_s < 3.0, f"the other device waited {steady.worst_s:.1f} s"
    assert seen.get("busy", 0) + seen.get("rate_limited", 0) > 0  # limits hold per device


@pytest.mark.parametrize("gateway", [("gateway.delay_deltas=20",
                                      "gateway.delay_per_delta_s=0.5",
                                      "gateway.backend_slots=8")], indirect=True)
def test_work_of_a_session_that_left_is_dropped_after_the_grace(
        gateway: GatewayProcess) -> None:
    # Four 10 s answers for a session that leaves. After the 1 s grace they are dropped, so
    # the same device's next four are taken (not refused as busy).
    raw = RawSocket(gateway.url)
    raw.hello("tok-3")
    raw.send(*[QueryRequest(query_id=f"gone-{i}", text="x") for i in range(4)])
    raw.close()
    time.sleep(2.5)
    back = RawSocket(gateway.url)
    back.hello("tok-3")
    back.send(*[QueryRequest(query_id=f"new-{i}", text="hi") for i in range(4)])
    first = [back.recv_json(timeout_s=10) for _ in range(4)]
    assert {m["type"] for m in first} == {"answer.delta"}, first
    back.close()


# --- 4. refused keyframes end their query ---------------------------------------------------


def test_a_refused_keyframe_ends_its_query_with_its_id(gateway: GatewayProcess) -> None:
    raw = RawSocket(gateway.url)
    raw.hello("tok-1")
    for i in range(5):  # more than the in-flight limit: none may be left hanging
        raw.send(QueryRequest(query_id=f"png-{i}", text="what is this?", images=1),
                 Keyframe(query_id=f"png-{i}", index=0, jpeg=b"\x89PNG" + b"\x00" * 100))
        error = raw.recv_json()
        assert (error["type"], error["code"], error["query_id"]) == ("error", "bad_image",
                                                                      f"png-{i}")
    raw.send(QueryRequest(query_id="twice", text="x", images=2),
             Keyframe(query_id="twice", index=0, jpeg=JPEG_1MB[:100]),
             Keyframe(query_id="twice", index=0, jpeg=JPEG_1MB[:100]))
    error = raw.recv_json()
    assert (error["code"], error["query_id"]) == ("unexpected_image", "twice")
    raw.send(QueryRequest(query_id="fine", text="still answered?"))
    assert raw.recv_until("answer.done")[-1]["text"] == "You asked: still answered?"
    raw.close()


# --- also -----------------------------------------------------------------------------------


def test_a_malformed_tokens_line_never_shows_a_token(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as info:
        TokenTable(["glasses-1 tok-1", "secret-token-abc glasses-2 extra"], source="tokens")
    assert "secret-token-abc" not in str(info.value) and "entry 2" in str(info.value)


def test_what_a_client_sends_cannot_forge_log_lines(tmp_path: Path) -> None:
    gateway = started(GatewayProcess(tmp_path, verbose=True, answers_db=False))
    try:
        raw = RawSocket(gateway.url)
        raw.hello("tok-1")
        raw.send(ErrorMessage(code="x\nFORGED gateway ready", message="y\r\nFORGED too"))
        raw.send(QueryRequest(query_id="sync", text="ok"))
        raw.recv_until("answer.done")
        raw.close()
    finally:
        gateway.terminate()
        log = gateway.read_rest()
    assert "FORGED" in log  # it was logged ...
    assert not any(line.startswith("FORGED") for line in log.splitlines())  # ... escaped


def test_the_same_query_from_a_second_live_session_is_refused_not_stolen(
        tmp_path: Path) -> None:
    gateway = started(GatewayProcess(tmp_path, answers_db=False, settings=(
        "gateway.delay_deltas=10", "gateway.delay_per_delta_s=0.05")))
    try:
        first, second = RawSocket(gateway.url), RawSocket(gateway.url)
        first.hello("tok-1")
        second.hello("tok-1")
        first.send(QueryRequest(query_id="shared", text="mine"))
        time.sleep(0.1)
        second.send(QueryRequest(query_id="shared", text="mine"))
        refused = second.recv_json()
        assert (refused["code"], refused["query_id"]) == ("duplicate_query", "shared")
        assert first.recv_until("answer.done")[-1]["text"] == "You asked: mine"
    finally:
        gateway.kill()


def test_queries_past_the_limit_whose_keyframes_never_come_close_the_connection(
        gateway: GatewayProcess) -> None:
    raw = RawSocket(gateway.url)
    raw.hello("tok-1")
    raw.send(*[QueryRequest(query_id=f"hold-{i}", text="x", images=2, max_tokens=4096)
               for i in range(4)])  # in flight, waiting for keyframes that never come
    raw.send(*[QueryRequest(query_id=f"over-{i}", text="x", images=2) for i in range(200)])
    codes = []
    try:
        while True:
            codes.append(raw.recv_json(timeout_s=10).get("code"))
    except ConnectionError:
        pass
    assert codes.count("busy") <= 33 and codes[-1] == "too_many_errors"
