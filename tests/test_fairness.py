"""The gateway's sharing rules in isolation: fair turns at the backend, per-device rates."""

from __future__ import annotations

import asyncio

import pytest
from support.aio import run

from glasses_agent.gateway.fairness import FairScheduler, TokenBucket


def test_turns_go_device_by_device_not_in_arrival_order() -> None:
    order: list[str] = []

    async def main() -> None:
        scheduler = FairScheduler(slots=1)
        release = asyncio.Event()

        async def job(device: str, name: str) -> None:
            async with scheduler.turn(device):
                order.append(name)
                await release.wait()

        tasks = [asyncio.create_task(job("a", "a0"))]
        await asyncio.sleep(0)  # a0 holds the slot
        tasks += [asyncio.create_task(job("a", f"a{i}")) for i in range(1, 5)]
        await asyncio.sleep(0)
        tasks.append(asyncio.create_task(job("b", "b0")))  # arrives after a's backlog
        await asyncio.sleep(0)
        assert scheduler.waiting("a") == 4 and scheduler.waiting("b") == 1
        release.set()
        await asyncio.gather(*tasks)
        assert scheduler.running == 0 and scheduler.waiting() == 0

    run(main())
    assert order[:3] == ["a0", "b0", "a1"]  # b waits for the run in progress, not a's backlog


def test_a_cancelled_waiter_gives_up_its_place_and_a_cancelled_holder_its_slot() -> None:
    async def main() -> None:
        scheduler = FairScheduler(slots=1)
        hold = asyncio.Event()

        async def job(device: str) -> None:
            async with scheduler.turn(device):
                await hold.wait()

        first = asyncio.create_task(job("a"))
        await asyncio.sleep(0)
        waiting = asyncio.create_task(job("b"))
        await asyncio.sleep(0)
        waiting.cancel()
        first.cancel()
        await asyncio.gather(first, waiting, return_exceptions=True)
        assert scheduler.running == 0 and scheduler.waiting() == 0
        hold.set()
        await asyncio.wait_for(job("c"), 1.0)  # the slot is free again

    run(main())


def test_a_rate_allows_a_burst_then_its_average() -> None:
    bucket = TokenBucket(rate_per_s=2.0, burst=3)
    assert [bucket.allow("d", 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow("other", 0.0)  # per device
    assert bucket.retry_after_s("d") == pytest.approx(0.5)
    assert not bucket.allow("d", 0.25) and bucket.allow("d", 0.75)
    bucket.refund("d")  # a question taken back at once costs nothing
    assert bucket.allow("d", 0.75)
    bucket.forget_full(100.0)
    assert bucket.allow("d", 100.0)


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        FairScheduler(slots=0)
    with pytest.raises(ValueError):
        TokenBucket(rate_per_s=0.0, burst=1)
