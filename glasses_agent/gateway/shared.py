"""Redis as the replicas' shared state, and what a replica does while Redis is away.

``SharedState`` wraps ``redis_state.RedisState`` with the replica's view of it:

- **up**: every decision that must hold across replicas goes through Redis (one
  round trip each: ``redis_state``).
- **unreachable** (a command failed or took longer than ``redis_timeout_s``): the
  replica says so once in its log and in ``/healthz``, and answers on its own, as a
  gateway without Redis does: no call waits on Redis (``call`` raises
  ``SharedStateDown`` at once) until a probe (every ``PROBE_S``) reaches it again.
  Answers finished meanwhile are kept here and written to Redis on recovery, and
  the sessions held here are registered again, so what happened during the outage
  is known to every replica afterwards.

``StreamWriter`` appends one running answer's text to its stream, at most every
``FLUSH_S`` (the deltas in between go as one entry: a few writes per answer, not
one per token); a follower on another replica hears the text that much later.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import ParamSpec, TypeVar

from redis.exceptions import RedisError

from glasses_agent.gateway.metrics import GatewayMetrics
from glasses_agent.gateway.redis_state import RedisState
from glasses_agent.protocol import AnswerDone

__all__ = ["SharedState", "SharedStateDown", "StreamWriter"]

logger = logging.getLogger("glasses_agent.gateway.shared")

P = ParamSpec("P")
T = TypeVar("T")

PROBE_S = 1.0
# A running answer's text goes to Redis at most this often, s.
FLUSH_S = 0.1
# Answers finished while Redis was away, kept to write there on recovery (the newest).
MAX_UNSYNCED = 100_000
REDIS_FAILURES = (RedisError, OSError, TimeoutError)


class SharedStateDown(Exception):
    """Redis is unreachable: do it this replica's own way (degraded mode)."""


class SharedState:
    """See the module docstring. ``on_recovered`` runs (awaited) when Redis is back,
    before the replica counts it as up again."""

    def __init__(self, state: RedisState, *, url: str, metrics: GatewayMetrics) -> None:
        self.state = state
        self.url = _without_password(url)
        self.metrics = metrics
        self.up = False
        self.on_recovered: Callable[[], Awaitable[None]] | None = None
        self._unsynced: OrderedDict[tuple[str, str], AnswerDone] = OrderedDict()
        self._probe: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def replica_id(self) -> str:
        return self.state.replica_id

    async def start(self) -> None:
        """Reach Redis once; unreachable, the replica starts in degraded mode."""
        self._watch = asyncio.get_running_loop().create_task(self._watch_up(), name="redis-watch")
        try:
            await self.state.ping()
        except REDIS_FAILURES as exc:
            self._went_down(exc)
            return
        self._set_up(True)
        logger.info("shared state: Redis at %s", self.url)

    async def _watch_up(self) -> None:
        """While Redis is up, PING it every ``PROBE_S``, so that ``/healthz`` tells the
        truth even when no query has needed Redis lately."""
        while not self._closed:
            await asyncio.sleep(PROBE_S)
            if self.up:
                with contextlib.suppress(SharedStateDown):
                    await self.call(self.state.ping)

    async def aclose(self) -> None:
        self._closed = True
        for task in (self._probe, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.state.aclose()

    async def call(self, op: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        """``await op(*args)``: a ``RedisState`` method; ``SharedStateDown`` when Redis is
        unreachable (now, or since an earlier failure)."""
        if not self.up:
            raise SharedStateDown(self.url)
        self.metrics.redis_round_trips.inc()
        try:
            return await asyncio.wait_for(op(*args, **kwargs), self.state.timeout_s * 3)
        except REDIS_FAILURES as exc:
            self._went_down(exc)
            raise SharedStateDown(self.url) from exc

    def keep(self, device_id: str, query_id: str, done: AnswerDone) -> None:
        """An answer finished while Redis was away: written there on recovery."""
        self._unsynced[(device_id, query_id)] = done
        while len(self._unsynced) > MAX_UNSYNCED:
            self._unsynced.popitem(last=False)

    def _set_up(self, up: bool) -> None:
        self.up = up
        self.metrics.redis_up.set(1 if up else 0)

    def _went_down(self, exc: BaseException) -> None:
        self.metrics.redis_errors.inc()
        if not self.up and self._probe is not None:
            return
        self._set_up(False)
        logger.warning("Redis at %s is unreachable (%s): answering on this replica alone; "
                       "exactly-once across reconnects and replicas is suspended until it "
                       "returns", self.url, _reason(exc))
        if not self._closed:
            self._probe = asyncio.get_running_loop().create_task(self._recover(),
                                                                   name="redis-probe")

    async def _recover(self) -> None:
        while not self._closed:
            await asyncio.sleep(PROBE_S)
            try:
                await asyncio.wait_for(self.state.ping(), self.state.timeout_s)
                await self._sync()
                if self.on_recovered is not None:
                    await self.on_recovered()
            except REDIS_FAILURES as exc:
                logger.debug("Redis still unreachable: %s", _reason(exc))
                continue
            self._set_up(True)
            self._probe = None
            logger.warning("Redis at %s is reachable again: exactly-once across reconnects "
                           "and replicas is restored", self.url)
            return

    async def _sync(self) -> None:
        """Write the answers finished during the outage to Redis."""
        while self._unsynced:
            (device_id, query_id), done = next(iter(self._unsynced.items()))
            await asyncio.wait_for(self.state.put_answer(device_id, query_id, done),
                                   self.state.timeout_s)
            self._unsynced.pop((device_id, query_id), None)

    async def renew_forever(self, leases: Callable[[], Sequence[tuple[str, str, str]]],
                            lost: Callable[[int], None]) -> None:
        """Renew this replica's leases every third of the lease time. ``leases()``: the
        ``(device, query, session)`` of the answers generated here; ``lost(i)``: another
        replica holds the lease of ``leases()[i]`` now."""
        period_s = self.state.lease_ms / 3000.0
        while True:
            await asyncio.sleep(period_s)
            held = list(leases())
            if not held or not self.up:
                continue
            with contextlib.suppress(SharedStateDown):
                kept = await self.call(self.state.renew, held)
                for index, ok in enumerate(kept):
                    if not ok:
                        lost(index)


class StreamWriter:
    """Appends one running answer to its Redis stream (see the module docstring).
    ``on_cancel(heard_chars)``: a barge-in came on another replica; ``on_lost()``: this
    replica no longer holds the query's lease (another took it over)."""

    def __init__(self, shared: SharedState, device_id: str, query_id: str, session_id: str, *,
                 on_cancel: Callable[[int], None], on_lost: Callable[[], None]) -> None:
        self.shared = shared
        self.device_id = device_id
        self.query_id = query_id
        self.session_id = session_id
        self.broken = False  # Redis failed: the answer goes on here alone
        self._on_cancel = on_cancel
        self._on_lost = on_lost
        self._pending = ""
        self._offset = 0
        self._written_s = float("-inf")  # when the last entry was written (loop time)
        self._task: asyncio.Task[None] | None = None

    def push(self, offset: int, text: str) -> None:
        if self.broken or not text:
            return
        if not self._pending:
            self._offset = offset
        self._pending += text
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush())

    def close(self) -> None:
        """Write nothing more: the answer's end (which holds all of its text) follows, or
        the query is given up. A write in flight finishes by itself."""
        self.broken = True
        self._pending = ""

    async def _flush(self) -> None:
        state = self.shared.state
        loop = asyncio.get_running_loop()
        while self._pending and not self.broken:
            wait_s = self._written_s + FLUSH_S - loop.time()
            if wait_s > 0:
                await asyncio.sleep(wait_s)  # more deltas join this entry meanwhile
                if not self._pending or self.broken:
                    return
            self._written_s = loop.time()
            text, offset = self._pending, self._offset
            self._pending, self._offset = "", offset + len(text)
            try:
                status = await self.shared.call(state.append, self.device_id, self.query_id,
                                                 self.session_id, offset, text)
                if self.broken:
                    return  # closed meanwhile: the answer ended here (its lease is gone)
                if status == 1:
                    heard = await self.shared.call(state.cancel_requested, self.device_id,
                                                   self.query_id)
                    self._on_cancel(heard or 0)
            except SharedStateDown:
                self.broken = True
                return
            if status < 0:
                self.broken = True
                self._on_lost()


def _without_password(url: str) -> str:
    """``url`` for logs: a password in it is replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest:
        return url
    auth, _, host = rest.rpartition("@")
    user = auth.partition(":")[0]
    return f"{scheme}://{user + ':' if user else ':'}***@{host}"


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
