"""The edge client: token, backoff, facts, link state, timeouts, refusal, barge-in."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.aio import cloud_config, run, running_gateway
from support.net import free_port

from glasses_agent.config import CloudConfig
from glasses_agent.edge.client import (
    CloudError,
    CloudRefusedError,
    CloudTimeoutError,
    EdgeClient,
    LinkState,
    backoff_delay_s,
    read_token,
)
from glasses_agent.errors import BadInputError
from glasses_agent.frames import Barcode, Label, Perception, Query, TextLine
from glasses_agent.gateway import MemoryAnswerStore
from glasses_agent.gateway.reasoning import DelayBackend, ReasoningRequest
from glasses_agent.protocol import Location, SeenBarcode, SeenLabel


def test_token_from_config_or_file_else_a_clear_error(tmp_path: Path) -> None:
    assert read_token(CloudConfig(token=" abc ")) == "abc"
    file = tmp_path / "token"
    file.write_text("from-file\n")
    assert read_token(CloudConfig(token_file=str(file))) == "from-file"
    with pytest.raises(BadInputError, match="no device token.*GLASSES_AGENT_CLOUD__TOKEN"):
        read_token(CloudConfig(token_file=str(tmp_path / "missing")))
    with pytest.raises(BadInputError, match="no device token"):
        EdgeClient(CloudConfig(token_file=""))


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    rng = random.Random(7)
    for attempt, base in [(1, 0.2), (2, 0.4), (3, 0.8), (6, 5.0), (40, 5.0)]:
        for _ in range(50):
            delay = backoff_delay_s(attempt, initial_s=0.2, max_s=5.0, rng=rng)
            assert 0.5 * base <= delay <= base


def test_a_query_carries_the_routers_facts_and_the_location_to_the_backend() -> None:
    perception = Perception(
        timestamp_s=1.0, labels=(Label(name="coffee mug", score=0.91234),),
        text=(TextLine(text="EXIT", score=0.9, box=(0, 0, 1, 1)),),
        faces=((0, 0, 5, 5), (1, 1, 4, 4)),
        barcodes=(Barcode(type="EAN13", data="4006381333931"),),
    )
    seen: list[ReasoningRequest] = []

    class Recording(DelayBackend):
        async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
            seen.append(request)
            async for delta in super().stream(request):
                yield delta

    async def main() -> None:
        async with running_gateway(Recording()) as gw, EdgeClient(cloud_config(gw.url)) as client:
            query = Query(query_id="q-facts", text="what is this?", timestamp_s=1.0,
                          perception=perception)
            await client.ask(query, location=(48.8583701, 2.2944813)).result()
            await client.ask("what time is it in Tokyo?").result()

    run(main())
    facts, bare = seen[0].facts, seen[1].facts
    assert facts.labels == (SeenLabel(name="coffee mug", score=0.91),)
    assert facts.text == ("EXIT",)
    assert facts.barcodes == (SeenBarcode(type="EAN-13", data="4006381333931"),)
    assert facts.people_in_view == 2
    assert facts.location == Location(lat=48.85837, lon=2.29448)
    local = facts.local_datetime()
    assert local is not None and local.tzinfo is not None  # the wearer's time, with its zone
    assert bare.local_datetime() is not None and not bare.sees_something
    assert bare.location is None  # no location unless the wearer allows it


def test_offline_until_the_gateway_comes_up_then_connected() -> None:
    port = free_port()
    seen: list[LinkState] = []

    async def main() -> None:
        config = cloud_config(f"ws://127.0.0.1:{port}", connect_timeout_s=2.0)
        async with EdgeClient(config, on_state=seen.append) as client:
            assert client.state is LinkState.OFFLINE  # nobody listens: the glasses go on
            reply = client.ask("are you there?")  # waits for the link, within the timeout
            async with running_gateway(port=port):
                await client.wait_for_state(LinkState.CONNECTED, timeout_s=30)
                assert (await reply.result()).text == "You asked: are you there?"
        assert client.state_history[:3] == (
            LinkState.RECONNECTING, LinkState.OFFLINE, LinkState.CONNECTED)

    run(main())
    assert seen[:2] == [LinkState.OFFLINE, LinkState.CONNECTED]


def test_states_stream_reports_changes() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            client = EdgeClient(cloud_config(gw.url))
            states: list[LinkState] = []

            async def watch() -> None:
                async for state in client.states():
                    states.append(state)

            watcher = asyncio.create_task(watch())
            await client.start()
            await client.aclose()
            await asyncio.wait_for(watcher, 10)
            assert states == [LinkState.RECONNECTING, LinkState.CONNECTED, LinkState.OFFLINE]

    run(main())


def test_no_answer_in_time_raises_a_timeout_and_cancels_the_query() -> None:
    store = MemoryAnswerStore(ttl_s=60)

    async def main() -> None:
        slow = DelayBackend(deltas=2, delay_per_delta_s=30.0)
        async with running_gateway(slow, store=store) as gw:
            async with EdgeClient(cloud_config(gw.url, answer_timeout_s=0.3)) as client:
                started = time.monotonic()
                with pytest.raises(CloudTimeoutError, match="within 0.3 s .link connected"):
                    await client.ask("slow one", query_id="slow-1").result()
                assert time.monotonic() - started < 20
                for _ in range(200):  # the gateway records the cancellation
                    if await store.get("glasses-1", "slow-1", time.time()):
                        break
                    await asyncio.sleep(0.05)
                stored = await store.get("glasses-1", "slow-1", time.time())
                assert stored is not None and stored.cancelled

    run(main())


def test_a_wrong_token_is_refused_and_not_retried() -> None:
    async def main() -> None:
        async with running_gateway() as gw:
            client = EdgeClient(cloud_config(gw.url, token="wrong"))
            with pytest.raises(CloudRefusedError, match="unauthorized") as info:
                await client.start()
            assert info.value.code == "unauthorized"
            assert client.state is LinkState.OFFLINE
            with pytest.raises(CloudRefusedError):
                client.ask("anyone?")
            await client.aclose()

    run(main())


def test_ask_sends_keyframes_and_perception_and_barge_in_cancels() -> None:
    async def main() -> None:
        backend = DelayBackend(text="word " * 40, deltas=40, delay_per_delta_s=0.02)
        store = MemoryAnswerStore(ttl_s=60)
        async with running_gateway(backend, store=store) as gw:
            async with EdgeClient(cloud_config(gw.url)) as client:
                perception = Perception(timestamp_s=0.0, labels=(Label(name="cat", score=0.9),))
                query = Query(query_id="look-1", text="what is this?", timestamp_s=0.0,
                              perception=perception, keyframes_jpeg=(b"\xff\xd8jpeg",))
                reply = client.ask(query)
                heard = ""
                with pytest.raises(CloudError, match="cancelled"):
                    async for delta in reply:
                        heard += delta
                        if len(heard) >= 10:
                            reply.cancel(heard_chars=len(heard))
                for _ in range(200):
                    stored = await store.get("glasses-1", "look-1", time.time())
                    if stored:
                        break
                    await asyncio.sleep(0.05)
                assert stored is not None and stored.cancelled
                assert stored.heard_chars == len(heard)

    run(main())

