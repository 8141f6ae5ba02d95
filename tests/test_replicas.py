"""Gateway replicas sharing their state in a real Redis, as real processes: a replica killed
mid-answer, a link dropped while its replica lives, a rolling restart under 200 sessions,
Redis restarted and stopped, forged and foreign resume handles, per-device limits across
replicas, HAProxy (deploy/haproxy.cfg) in front; and, in this process, the HTTP endpoints
and the edge client's failover over several URLs."""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.aio import cloud_config, run, running_gateway
from support.faultproxy import FaultProxy
from support.gateway_proc import GatewayProcess
from support.haproxy_proc import HAProxy, haproxy_available
from support.net import free_port
from support.redis_proc import RedisServer, redis_available
from support.replicas import ReplicaSet
from support.wire import raw_connect

from glasses_agent.edge.client import EdgeClient, LinkState, Reply
from glasses_agent.gateway.reasoning import DelayBackend
from glasses_agent.gateway.redis_state import RedisState
from glasses_agent.protocol import AnswerDone, QueryRequest

needs_redis = pytest.mark.skipif(not redis_available(),
                                 reason="redis-server is not installed (bash scripts/setup.sh)")

# One answer takes 20 deltas x 50 ms = 1 s: long enough to act in the middle of it.
SLOW = ("gateway.delay_deltas=20", "gateway.delay_per_delta_s=0.05", "gateway.heartbeat_s=1.0",
        "gateway.lease_s=1.0", "gateway.backend_slots=64")
QUICK = ("gateway.delay_deltas=4", "gateway.delay_per_delta_s=0.05", "gateway.heartbeat_s=2.0",
         "gateway.lease_s=1.0", "gateway.backend_slots=256")
# Answers of 2 s: at each SIGTERM many are running, and most of their edges, back within
# about half a second on the other replica, follow them there (not generated twice).
ROLLING = ("gateway.delay_deltas=4", "gateway.delay_per_delta_s=0.5", "gateway.heartbeat_s=2.0",
           "gateway.lease_s=1.0", "gateway.backend_slots=256")


Body = Callable[[ReplicaSet], Coroutine[Any, Any, None]]


def on_replicas(settings: tuple[str, ...], *, devices: int = 2, timeout_s: float = 90
                ) -> Callable[[Body], Callable[[Path], None]]:
    """A test whose body, a coroutine, runs on a fresh Redis and two replicas (with
    ``settings``, devices glasses-1.. with tok-1..), within ``timeout_s``."""
    def wrap(body: Body) -> Callable[[Path], None]:
        @needs_redis
        def test(tmp_path: Path) -> None:
            with ReplicaSet(tmp_path, settings=settings, devices=devices) as replicas:
                run(body(replicas), timeout_s=timeout_s)
        test.__doc__ = body.__doc__
        return test
    return wrap


async def _heard(reply: Reply) -> str:
    """Everything the wearer would hear; it must equal the final answer."""
    text = "".join([delta async for delta in reply])
    assert reply.answer is not None
    assert text == reply.answer.text
    return text


def _total(replicas: list[GatewayProcess], name: str) -> float:
    return sum(r.metrics().get(name, 0.0) for r in replicas)


@on_replicas(SLOW, timeout_s=90)
async def test_replica_killed_mid_answer_the_other_takes_over_once(
        replicas: ReplicaSet) -> None:
    config = cloud_config(replicas.urls[0], urls=replicas.urls, heartbeat_s=1.0,
                          reconnect_max_s=0.3)
    async with EdgeClient(config) as client:
        holder = replicas.by_url(client.url)
        reply = client.ask("count to twenty", query_id="kill-1")
        heard = ""
        async for delta in reply:
            heard += delta
            if len(heard) >= 3 and holder.proc and holder.proc.poll() is None:
                holder.kill()  # SIGKILL in the middle of the stream
        answer = reply.answer
        assert answer is not None
        assert heard == answer.text == "You asked: count to twenty"
        assert reply.restarts == 1 and not answer.replayed  # regenerated, said once
        assert client.url != holder.url and client.sessions_resumed == 1
    other = next(r for r in replicas if r is not holder)
    metrics = other.metrics()
    assert metrics["glasses_gateway_takeovers_total"] == 1
    assert metrics['glasses_gateway_resumes_total{source="shared"}'] == 1


@on_replicas(SLOW, timeout_s=90)
async def test_link_dropped_replica_alive_resumes_elsewhere_and_runs_the_backend_once(
        replicas: ReplicaSet) -> None:
    proxies = [FaultProxy(r.port) for r in replicas]
    for proxy in proxies:
        await proxy.start()
    try:
        config = cloud_config(proxies[0].url, urls=tuple(p.url for p in proxies),
                              heartbeat_s=1.0, reconnect_max_s=0.3)
        async with EdgeClient(config) as client:
            path = next(p for p in proxies if p.url == client.url)
            reply = client.ask("count to twenty", query_id="drop-1")
            heard = ""
            async for delta in reply:
                heard += delta
                if len(heard) >= 3 and not path.refusing:
                    path.refusing = True  # the way to this replica is broken...
                    path.cut()  # ...and the link drops; the replica stays up
            answer = reply.answer
            assert answer is not None and heard == answer.text
            assert answer.text == "You asked: count to twenty"
            assert reply.restarts == 0 and client.sessions_resumed == 1
            assert client.url != path.url
    finally:
        for proxy in proxies:
            await proxy.aclose()
    assert _total(replicas.replicas, "glasses_gateway_backend_runs_total") == 1
    assert _total(replicas.replicas,
                  'glasses_gateway_queries_total{outcome="followed"}') == 1


async def _asking(index: int, urls: tuple[str, ...], stop: asyncio.Event,
                  answers: dict[str, str]) -> tuple[int, int]:
    """One device asking, waiting for the answer, pausing, asking again until ``stop``;
    (sessions opened, sessions resumed). Raises on any query not answered."""
    rng = random.Random(index)
    config = cloud_config(urls[0], urls=urls, token=f"tok-{index}", heartbeat_s=2.0,
                          reconnect_max_s=0.5)
    async with EdgeClient(config, rng=rng) as client:
        number = 0
        while not stop.is_set():
            number += 1
            qid, text = f"d{index}-{number}", f"question {number} from device {index}"
            reply = client.ask(text, query_id=qid)
            assert await _heard(reply) == f"You asked: {text}", qid
            answers[qid] = reply.answer.text if reply.answer else ""
            await asyncio.sleep(rng.uniform(0.5, 1.5))
        return client.sessions_opened, client.sessions_resumed


@on_replicas(ROLLING, devices=200, timeout_s=150)
async def test_rolling_restart_under_200_sessions_loses_none_and_answers_none_twice(
        replicas: ReplicaSet) -> None:
    stop, answers = asyncio.Event(), {}
    devices = [asyncio.create_task(_asking(i, replicas.urls, stop, answers))
               for i in range(1, 201)]
    await asyncio.sleep(3)
    for replica in replicas:  # SIGTERM each in turn, start it again
        await asyncio.to_thread(replicas.stop, replica)
        await asyncio.to_thread(replica.start)
        await asyncio.sleep(3)
    stop.set()
    sessions = await asyncio.gather(*devices)
    runs = await asyncio.to_thread(replicas.stop_all)
    assert len(answers) >= 3 * 200
    assert runs == len(answers)  # one backend run per query: none generated twice
    # Every device left a stopped replica and resumed its session on the other.
    assert all(opened >= 2 and resumed == opened - 1 for opened, resumed in sessions), \
        sessions


@on_replicas(QUICK, timeout_s=120)
async def test_redis_restarted_and_stopped_degrades_then_recovers_losing_no_answer(
        replicas: ReplicaSet) -> None:
    stop, answers = asyncio.Event(), {}
    asking = asyncio.create_task(_asking(2, replicas.urls, stop, answers))
    config = cloud_config(replicas.urls[0], urls=replicas.urls)
    async with EdgeClient(config) as client:
        before = {f"before-{i}": (await client.ask(f"before {i}",
                                                   query_id=f"before-{i}").result()).text
                  for i in range(5)}
        # Restarted (SIGTERM, then started on its append-only file) while device 2 keeps
        # asking; then killed (kill -9) and away for a while.
        await asyncio.to_thread(replicas.redis.stop)
        await asyncio.to_thread(replicas.redis.start)
        await _until(lambda: all(r.health()["status"] == "ok" for r in replicas))
        replicas.redis.kill()
        await _until(lambda: all(r.health()["status"] == "degraded" for r in replicas))
        assert all(r.health()["exactly_once_across_replicas"] is False for r in replicas)
        during = {f"during-{i}": (await client.ask(f"during {i}",
                                                   query_id=f"during-{i}").result()).text
                  for i in range(5)}  # still answered
        await asyncio.to_thread(replicas.redis.start)  # the same folder: its AOF
        await _until(lambda: all(r.health()["status"] == "ok" for r in replicas))
    stop.set()
    await asyncio.wait_for(asking, 60)
    # Every answer finished before, and during, the outage is kept, on any replica.
    for replica in replicas:
        raw = await raw_connect(replica.url)
        await raw.hello("tok-1")
        for qid, text in {**before, **during}.items():
            await raw.send(QueryRequest(query_id=qid, text="again"))
            done = await raw.recv_until("answer.done")
            assert done[-1]["replayed"] is True and done[-1]["text"] == text, qid
        await raw.ws.close()
    metrics = replicas[0].metrics()
    assert metrics["glasses_gateway_redis_up"] == 1
    assert metrics["glasses_gateway_redis_errors_total"] >= 1
    assert len(answers) >= 3
    for replica in replicas:
        replica.kill()
        log = await asyncio.to_thread(replica.read_rest)
        assert "exactly-once across reconnects and replicas is suspended" in log
        assert "exactly-once across reconnects and replicas is restored" in log


async def _until(check: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, "not in time"
        await asyncio.sleep(0.2)


@on_replicas(QUICK, timeout_s=60)
async def test_foreign_and_forged_resume_handles_reach_no_one_elses_session(
        replicas: ReplicaSet) -> None:
    first = await raw_connect(replicas[0].url)
    started = await first.hello("tok-1")
    handle, session_id = started["resume_handle"], started["session_id"]
    await first.send(QueryRequest(query_id="secret-1", text="my secret"))
    assert (await first.recv_until("answer.done"))[-1]["text"] == "You asked: my secret"
    await first.ws.close()
    forged = [handle[:-1] + ("A" if handle[-1] != "A" else "B"), "x" * 24, handle + "x"]
    for index, replica in enumerate(replicas):
        # Device 2 presenting device 1's handle, on either replica: a new session
        # of its own, and device 1's answers are not its answers (on the second
        # replica it gets its own first answer again, replayed).
        other = await raw_connect(replica.url)
        got = await other.hello("tok-2", resume=handle)
        assert got["resumed"] is False and got["session_id"] != session_id
        await other.send(QueryRequest(query_id="secret-1", text="whose secret"))
        done = (await other.recv_until("answer.done"))[-1]
        assert done["text"] == "You asked: whose secret"
        assert done["replayed"] is (index > 0)
        await other.ws.close()
        for made_up in forged:
            raw = await raw_connect(replica.url)
            got = await raw.hello("tok-1", resume=made_up)
            assert got["resumed"] is False and got["session_id"] != session_id
            await raw.ws.close()
    # The real handle still works, on the replica that never held the session.
    again = await raw_connect(replicas[1].url)
    got = await again.hello("tok-1", resume=handle)
    assert got["resumed"] is True and got["session_id"] == session_id
    await again.ws.close()


@on_replicas((*SLOW, "gateway.max_queries_in_flight=2", "gateway.device_burst=3",
              "gateway.device_queries_per_min=1"), timeout_s=60)
async def test_per_device_limits_hold_across_replicas(replicas: ReplicaSet) -> None:
    on_a, on_b = await raw_connect(replicas[0].url), await raw_connect(replicas[1].url)
    await on_a.hello("tok-1")
    await on_b.hello("tok-1")
    await on_a.send(QueryRequest(query_id="q1", text="one"))
    await on_a.recv_until("answer.delta")  # running on A (else B may count first, A refuse)
    await on_b.send(QueryRequest(query_id="q2", text="two"))
    await on_b.send(QueryRequest(query_id="q3", text="three"))
    refused = (await on_b.recv_until("error"))[-1]
    assert refused["code"] == "busy" and refused["query_id"] == "q3"
    await on_a.recv_until("answer.done")
    await on_b.recv_until("answer.done")
    await on_a.send(QueryRequest(query_id="q4", text="four"))  # the third of the burst
    await on_a.recv_until("answer.done")
    await on_b.send(QueryRequest(query_id="q5", text="five"))
    refused = (await on_b.recv_until("error"))[-1]
    assert refused["code"] == "rate_limited" and refused["query_id"] == "q5"
    await on_a.ws.close()
    await on_b.ws.close()


@pytest.mark.skipif(not haproxy_available(),
                    reason="haproxy is not installed (bash scripts/setup.sh installs it)")
@on_replicas(QUICK, devices=20, timeout_s=120)
async def test_haproxy_in_front_of_two_replicas_through_a_rolling_restart(
        replicas: ReplicaSet) -> None:
    balancer = HAProxy(replicas.folder / "haproxy", (replicas[0].port, replicas[1].port))
    await asyncio.to_thread(balancer.start)
    try:
        stop, answers = asyncio.Event(), {}
        devices = [asyncio.create_task(_asking(i, (balancer.url,), stop, answers))
                   for i in range(1, 21)]
        await asyncio.sleep(2)
        for replica in replicas:
            await asyncio.to_thread(replicas.stop, replica)
            await asyncio.to_thread(replica.start)
            await asyncio.sleep(3)  # two health checks: the balancer sees it again
        stop.set()
        sessions = await asyncio.gather(*devices)
        health = await asyncio.to_thread(_get_json, balancer.url + "/healthz")
        assert health["redis"] == "up"
        runs = await asyncio.to_thread(replicas.stop_all)
        assert runs == len(answers) > 50
        assert all(opened >= 2 and resumed == opened - 1 for opened, resumed in sessions)
    finally:
        await asyncio.to_thread(balancer.stop)


@needs_redis
def test_a_lease_renewal_that_arrives_after_the_end_brings_nothing_back(tmp_path: Path) -> None:
    """A replica's renewal pipeline, sent while its answers ran, reaches Redis after they
    ended (finished, failed, given up): the queries must not count in flight again."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        async def main() -> None:
            state = RedisState(redis.url, replica_id="r1", lease_s=30.0, resume_ttl_s=60.0,
                               answer_ttl_s=60.0, timeout_s=2.0)
            limits = {"max_in_flight": 3, "queries_per_min": 6000.0, "burst": 100}
            try:
                for qid in ("done-1", "failed-1", "gone-1"):
                    assert (await state.claim("glasses-1", qid, "s1", **limits)).outcome == \
                        "claimed"
                await state.finish("glasses-1", "done-1", "s1",
                                   AnswerDone(query_id="done-1", text="an answer"))
                await state.end("glasses-1", "failed-1", "s1", code="backend_error")
                await state.end("glasses-1", "gone-1", "s1")
                late = [("glasses-1", qid, "s1") for qid in ("done-1", "failed-1", "gone-1")]
                assert await state.renew(late) == [True, True, True]  # not taken over
                for qid in ("done-1", "failed-1", "gone-1"):
                    assert (await state.probe("glasses-1", qid))[1] == "", qid  # no owner
                # All three slots are free: three new queries are taken, a fourth is not.
                outcomes = [(await state.claim("glasses-1", f"next-{i}", "s1", **limits)).outcome
                            for i in range(4)]
                assert outcomes == ["claimed", "claimed", "claimed", "busy"]
                # A renewal of an answer still running keeps it (and one taken over is lost).
                assert await state.renew([("glasses-1", "next-0", "s1")]) == [True]
                other = RedisState(redis.url, replica_id="r2", lease_s=30.0, resume_ttl_s=60.0,
                                   answer_ttl_s=60.0, timeout_s=2.0)
                await other.redis.delete(other.key("glasses-1", "lease:next-1"))
                assert (await other.claim("glasses-1", "next-1", "s2", takeover=True,
                                          **limits)).outcome == "claimed"
                assert await state.renew([("glasses-1", "next-1", "s1")]) == [False]
                await other.aclose()
            finally:
                await state.aclose()

        run(main(), timeout_s=30)
    finally:
        redis.kill()


def _get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url.replace("ws://", "http://"), timeout=5) as response:
        body: dict[str, object] = json.loads(response.read())
        return body


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url.replace("ws://", "http://"), timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_health_readiness_and_metrics_over_http_on_the_websocket_port() -> None:
    async def main() -> None:
        async with running_gateway(DelayBackend(deltas=2)) as gw, \
                EdgeClient(cloud_config(gw.url)) as client:
            await client.ask("hello there", query_id="m1").result()
            await client.ask("hello there", query_id="m1b").result()
            status, kind, body = await asyncio.to_thread(_get, gw.url + "/healthz")
            health = json.loads(body)
            assert status == 200 and kind == "application/json"
            assert health["status"] == "ok" and health["redis"] == "not used"
            assert health["sessions"] == 1
            assert (await asyncio.to_thread(_get, gw.url + "/readyz"))[:1] == (200,)
            status, kind, body = await asyncio.to_thread(_get, gw.url + "/metrics")
            assert status == 200 and kind.startswith("text/plain")
            samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                       for family in text_string_to_metric_families(body)
                       for s in family.samples}
            assert samples[("glasses_gateway_queries_total", (("outcome", "answered"),))] == 2
            assert samples[("glasses_gateway_sessions", ())] == 1
            assert samples[("glasses_gateway_answer_seconds_count", ())] == 2
            assert samples[("glasses_gateway_redis_up", ())] == -1
            assert (await asyncio.to_thread(_get, gw.url + "/nowhere"))[0] == 404

    run(main(), timeout_s=60)


def test_client_fails_over_from_a_refusing_url_and_after_going_away() -> None:
    async def main() -> None:
        dead = f"ws://127.0.0.1:{free_port()}"
        async with running_gateway() as first, running_gateway() as second:
            for seed in range(4):  # whichever URL it starts at
                config = cloud_config(dead, urls=(dead, first.url))
                async with EdgeClient(config, rng=random.Random(seed)) as client:
                    await client.wait_for_state(LinkState.CONNECTED, timeout_s=10)
                    assert client.url == first.url
            config = cloud_config(first.url, urls=(first.url, second.url))
            async with EdgeClient(config, rng=random.Random(0)) as client:
                start = client.url
                gateway = first if start == first.url else second
                await client.ask("before", query_id="g1").result()
                await gateway.shutdown(reconnect_after_s=0.05)  # going_away, then close 1001
                await client.wait_for_state(LinkState.RECONNECTING, timeout_s=10)
                await client.wait_for_state(LinkState.CONNECTED, timeout_s=10)
                assert client.url != start
                assert (await client.ask("after", query_id="g2").result()).text == \
                    "You asked: after"

    run(main(), timeout_s=60)
