"""Sharing the gateway between devices: per-device limits and a fair backend queue.

A hostile or careless device must not starve the others. Three rules, each per
device (a device id from its token), whatever number of sessions it opens:

- **In flight** (counted by the gateway): at most ``max_queries_in_flight``
  answers waiting or being generated; more are refused ``busy``.
- **Rate** (``TokenBucket``): ``device_queries_per_min`` new answers a minute on
  average, in bursts of ``device_burst``; more are refused ``rate_limited``. A
  question cancelled before its answer began costs nothing.
- **Fair turns** (``FairScheduler``): the backend generates ``backend_slots``
  answers at once; a free slot goes to the waiting device served longest ago,
  so one device's backlog never delays another device beyond the generation
  already running.

Time is an argument (``now_s``); nothing here reads a clock.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator

__all__ = ["FairScheduler", "TokenBucket"]


class TokenBucket:
    """Per-key token buckets: ``rate_per_s`` tokens a second, at most ``burst`` kept."""

    def __init__(self, *, rate_per_s: float, burst: int) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate needs rate_per_s > 0 and burst >= 1, not "
                             f"{rate_per_s} and {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)

    def allow(self, key: str, now_s: float) -> bool:
        """Take a token for ``key`` if there is one."""
        tokens, then_s = self._buckets.get(key, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + max(0.0, now_s - then_s) * self.rate_per_s)
        allowed = tokens >= 1.0
        self._buckets[key] = (tokens - 1.0 if allowed else tokens, now_s)
        return allowed

    def refund(self, key: str) -> None:
        """Give back a token (a question taken back before any work was done for it)."""
        if key in self._buckets:
            tokens, then_s = self._buckets[key]
            self._buckets[key] = (min(float(self.burst), tokens + 1.0), then_s)

    def retry_after_s(self, key: str) -> float:
        """How long until ``key`` has a token again."""
        tokens, _ = self._buckets.get(key, (float(self.burst), 0.0))
        return max(0.0, (1.0 - tokens) / self.rate_per_s)

    def forget_full(self, now_s: float) -> None:
        """Drop the buckets that have refilled (a device gone quiet costs nothing)."""
        for key, (tokens, then_s) in list(self._buckets.items()):
            if tokens + (now_s - then_s) * self.rate_per_s >= self.burst:
                del self._buckets[key]


class FairScheduler:
    """``slots`` backend runs at a time, handed out device by device in turn."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"the backend needs at least 1 slot, not {slots}")
        self.slots = slots
        self.running = 0
        self._waiting: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self._turns = 0
        self._last_turn: dict[str, int] = {}  # device -> the number of its latest turn

    def waiting(self, device_id: str | None = None) -> int:
        """Runs waiting for a slot (of one device, or of all)."""
        if device_id is not None:
            return len(self._waiting.get(device_id, ()))
        return sum(len(q) for q in self._waiting.values())

    @contextlib.asynccontextmanager
    async def turn(self, device_id: str) -> AsyncIterator[None]:
        """Wait for this device's turn at a slot; hold it for the block."""
        if self.running < self.slots and not self._waiting:
            self.running += 1
            self._took_turn(device_id)
        else:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiting.setdefault(device_id, deque()).append(future)
            try:
                await future  # the slot is handed over already counted
            except asyncio.CancelledError:
                if future.done() and not future.cancelled():
                    self._release()  # handed over just as it was cancelled: pass it on
                else:
                    self._forget(device_id, future)
                raise
        try:
            yield
        finally:
            self._release()

    def _forget(self, device_id: str, future: asyncio.Future[None]) -> None:
        queue = self._waiting.get(device_id)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(future)
            if not queue:
                del self._waiting[device_id]

    def _took_turn(self, device_id: str) -> None:
        self._turns += 1
        self._last_turn[device_id] = self._turns
        if len(self._last_turn) > 4 * (len(self._waiting) + self.slots) + 1024:
            # Forget devices long gone; a forgotten device simply counts as never served.
            for gone in sorted(self._last_turn, key=self._last_turn.__getitem__)[:512]:
                del self._last_turn[gone]

    def _release(self) -> None:
        """A slot is free: give it to the waiting device served longest ago (one never
        served first), or count it free."""
        while self._waiting:
            device_id = min(self._waiting, key=lambda d: self._last_turn.get(d, 0))
            queue = self._waiting[device_id]
            future = queue.popleft()
            if not queue:
                del self._waiting[device_id]
            if not future.done():
                self._took_turn(device_id)
                future.set_result(None)
                return
        self.running -= 1
