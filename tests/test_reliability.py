"""Reliability on loopback with real sockets: a gateway killed mid-answer and started
again, and a fault-injecting TCP proxy (delays, cuts, stalls, refusals) between the
edge and the gateway. No query lost, none answered twice; the edge reports
offline and recovers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from support.aio import cloud_config, run, running_gateway
from support.faultproxy import FaultProxy
from support.gateway_proc import GatewayProcess
from support.wire import raw_connect

from glasses_agent.edge.client import EdgeClient, LinkState, Reply
from glasses_agent.gateway.reasoning import DelayBackend
from glasses_agent.protocol import QueryRequest


async def _spoken(reply: Reply) -> str:
    """Everything the wearer would hear; must equal the final answer."""
    text = "".join([delta async for delta in reply])
    assert reply.answer is not None
    assert text == reply.answer.text
    return text


def test_gateway_killed_mid_answer_then_restarted_answers_exactly_once(tmp_path: Path) -> None:
    gateway = GatewayProcess(tmp_path, settings=(
        "gateway.delay_deltas=20", "gateway.delay_per_delta_s=0.05", "gateway.heartbeat_s=1.0"))
    gateway.start()
    try:
        async def main() -> None:
            config = cloud_config(gateway.url, reconnect_max_s=0.3, heartbeat_s=1.0)
            async with EdgeClient(config) as client:
                kept = await client.ask("remember me", query_id="kept-1").result()
                reply = client.ask("count to twenty", query_id="kill-1")
                heard, killed = "", False
                async for delta in reply:
                    heard += delta
                    if len(heard) >= 3 and not killed:
                        gateway.kill()  # SIGKILL in the middle of the stream
                        killed = True
                        await client.wait_for_state(LinkState.RECONNECTING, LinkState.OFFLINE,
                                                    timeout_s=30)
                        await asyncio.to_thread(gateway.start)
                answer = reply.answer
                assert answer is not None
                assert heard == answer.text == "You asked: count to twenty"
                assert reply.restarts == 1 and not answer.replayed  # regenerated, said once
                assert client.sessions_opened == 2

            # The answered ids survived the kill (SQLite): a re-sent query is replayed.
            gateway.kill()
            await asyncio.to_thread(gateway.start)
            raw = await raw_connect(gateway.url)
            await raw.hello("tok-1")
            await raw.send(QueryRequest(query_id="kept-1", text="remember me"))
            done = await raw.recv_json()
            assert done["type"] == "answer.done" and done["replayed"] is True
            assert done["text"] == kept.text
            await raw.send(QueryRequest(query_id="kill-1", text="count to twenty"))
            assert (await raw.recv_json())["replayed"] is True
            await raw.ws.close()

        run(main(), timeout_s=150)
    finally:
        gateway.kill()


def test_delays_and_cuts_lose_no_query_and_answer_none_twice() -> None:
    async def main() -> None:
        backend = DelayBackend(deltas=8, delay_per_delta_s=0.03)
        async with running_gateway(backend, heartbeat_s=0.5) as gw:
            proxy = FaultProxy(gw.port)
            await proxy.start()
            config = cloud_config(proxy.url, heartbeat_s=0.5, reconnect_max_s=0.3)
            try:
                async with EdgeClient(config) as client:
                    replies = [client.ask(f"question {i}", query_id=f"f{i}") for i in range(16)]
                    spoken = asyncio.gather(*(_spoken(r) for r in replies))
                    for round_ in range(5):
                        await asyncio.sleep(0.2)
                        proxy.delay_s = 0.02 if round_ % 2 else 0.0
                        proxy.cut()
                    proxy.delay_s = 0.0
                    texts = await spoken
                    assert texts == [f"You asked: question {i}" for i in range(16)]
                    assert client.sessions_opened >= 2
                    assert LinkState.RECONNECTING in client.state_history[1:]
                assert gw.answers_generated == 16  # one backend run per query, not more
            finally:
                await proxy.aclose()

    run(main(), timeout_s=150)


def test_a_stalled_then_refusing_link_goes_offline_and_recovers() -> None:
    async def main() -> None:
        backend = DelayBackend(deltas=10, delay_per_delta_s=0.05)
        async with running_gateway(backend, heartbeat_s=0.5) as gw:
            proxy = FaultProxy(gw.port)
            await proxy.start()
            config = cloud_config(proxy.url, heartbeat_s=0.3, connect_timeout_s=0.5,
                                  reconnect_max_s=0.3)
            try:
                async with EdgeClient(config) as client:
                    first = client.ask("before the stall", query_id="s1")
                    async for _ in first:
                        break
                    proxy.stall()  # nothing moves; the sockets stay open
                    during = client.ask("during the stall", query_id="s2")
                    await client.wait_for_state(LinkState.OFFLINE, timeout_s=60)
                    proxy.refusing = True
                    proxy.resume()
                    proxy.cut()
                    await asyncio.sleep(0.3)
                    assert client.state is not LinkState.CONNECTED
                    proxy.refusing = False
                    await client.wait_for_state(LinkState.CONNECTED, timeout_s=60)
                    rest = "".join([d async for d in first])
                    assert first.answer is not None
                    assert first.answer.text == "You asked: before the stall"
                    assert first.answer.text.endswith(rest)
                    assert await _spoken(during) == "You asked: during the stall"
                    history = client.state_history
                    assert history.index(LinkState.OFFLINE) < len(history) - 1
                    assert history[-1] is LinkState.CONNECTED
                assert gw.answers_generated == 2
            finally:
                await proxy.aclose()

    run(main(), timeout_s=150)
