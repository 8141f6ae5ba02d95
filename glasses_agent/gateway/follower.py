"""Streaming an answer that another replica generates to a connection held here.

An edge resumed on this replica re-sends a query whose answer another replica is
still generating (it holds the query's lease). The answer is not generated twice:
a ``Follower`` reads the query's Redis stream from the start and sends the edge the
text past the ``resume_from`` characters it already has, then the ``answer.done``
(or the error) the generator wrote at the end.

When the stream goes quiet the follower looks at the lease: if nobody holds it any
more (the generator died, or gave the query up) it asks the gateway to take the
query over (``take_over``): generate it here, after ``answer.reset`` when the edge
already has some of it. A ``reset`` entry in the stream means another replica did
just that; text the edge has from an earlier run is then reset too, so the edge
never hears two runs spliced together.

``StreamHub``: after a first read of its own (to catch up at once), each follower
waits on the hub, which reads every followed stream with one blocking ``XREAD`` at
a time: a replica following thousands of answers (a rolling restart of another)
uses one Redis connection for them, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from glasses_agent.gateway.redis_state import StreamEntry
from glasses_agent.gateway.sessions import Link
from glasses_agent.gateway.shared import SharedState, SharedStateDown

__all__ = ["Follower", "StreamHub"]

Batch = list[StreamEntry] | None  # None: Redis became unreachable


@dataclass(slots=True, eq=False)
class _Subscription:
    after_id: str
    queue: asyncio.Queue[Batch] = field(default_factory=asyncio.Queue)


class StreamHub:
    """Reads every followed stream with one blocking ``XREAD`` (see the module docstring)."""

    def __init__(self, shared: SharedState) -> None:
        self.shared = shared
        self.block_ms = max(50, min(250, int(shared.state.timeout_s * 500)))
        self._subs: dict[str, _Subscription] = {}
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self, key: str, after_id: str) -> asyncio.Queue[Batch]:
        """Entries of stream ``key`` after ``after_id``, in batches, from now on."""
        sub = _Subscription(after_id)
        self._subs[key] = sub
        self._changed.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stream-hub")
        return sub.queue

    def unsubscribe(self, key: str, queue: asyncio.Queue[Batch]) -> None:
        sub = self._subs.get(key)
        if sub is not None and sub.queue is queue:
            del self._subs[key]

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        state = self.shared.state
        while True:
            if not self._subs:
                self._changed.clear()
                await self._changed.wait()
                continue
            positions = {key: sub.after_id for key, sub in self._subs.items()}
            try:
                found = await self.shared.call(state.read, positions, self.block_ms)
            except SharedStateDown:
                for gone in self._subs.values():
                    gone.queue.put_nowait(None)
                self._subs.clear()
                continue
            for key, entries in found.items():
                sub = self._subs.get(key)
                if sub is not None and entries:
                    sub.after_id = entries[-1].entry_id
                    sub.queue.put_nowait(entries)


class Follower:
    """Follows one query's stream for one link (see the module docstring).

    ``take_over(had_chars)`` returns True when the query ended or is generated here
    now, False when another replica holds it (keep following). ``on_end(outcome)``
    counts how the query ended here (``followed``, ``failed``)."""

    def __init__(self, hub: StreamHub, link: Link, device_id: str, query_id: str, *,
                 resume_from: int, take_over: Callable[[int], Awaitable[bool]],
                 on_end: Callable[[str], None]) -> None:
        self.hub = hub
        self.shared = hub.shared
        self.link = link
        self.device_id = device_id
        self.query_id = query_id
        self.text = ""  # the stream's text of the run being followed
        self._sent = resume_from  # characters the edge has
        self._take_over = take_over
        self._on_end = on_end
        self._quiet_s = max(0.25, self.shared.state.lease_ms / 2000.0)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(
            self._run(), name=f"follow {self.query_id}")

    async def stop(self) -> None:
        if self.task is not None and self.task is not asyncio.current_task():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _run(self) -> None:
        state = self.shared.state
        key = state.stream_key(self.device_id, self.query_id)
        try:
            entries = (await self.shared.call(state.read, {key: "0-0"})).get(key, [])
            if await self._apply_all(entries):
                return
            queue = self.hub.subscribe(key, entries[-1].entry_id if entries else "0-0")
            try:
                await self._follow(queue)
            finally:
                self.hub.unsubscribe(key, queue)
        except SharedStateDown:
            # Nobody can tell what the generator does: answer here (degraded mode).
            await self._take_over(self._sent)
        finally:
            self.link.wake()

    async def _follow(self, queue: asyncio.Queue[Batch]) -> None:
        while True:
            try:
                batch = await asyncio.wait_for(queue.get(), self._quiet_s)
            except TimeoutError:
                if await self._quiet():
                    return
                continue
            if batch is None:
                raise SharedStateDown(self.shared.url)
            if await self._apply_all(batch):
                return

    async def _apply_all(self, entries: list[StreamEntry]) -> bool:
        """Pass stream entries on; True when the query has ended here."""
        for entry in entries:
            if self._apply(entry):
                return True
        self.link.wake()
        if entries and entries[-1].kind == "gone":
            return await self._quiet()  # the generator gave the query up (shutting down)
        return False

    async def _quiet(self) -> bool:
        """Nothing new: the answer may be kept already, or its generator gone."""
        done, owner = await self.shared.call(self.shared.state.probe, self.device_id,
                                             self.query_id)
        if done is not None:
            if self.link.conn.send_done(done):
                self._on_end("followed")
            return True
        if owner:
            return False
        return await self._take_over(self._sent)

    def _apply(self, entry: StreamEntry) -> bool:
        """Pass one stream entry on; True when the query has ended here."""
        conn, qid = self.link.conn, self.query_id
        if entry.kind == "text":
            self.text = self.text[:entry.offset] + entry.text
            if len(self.text) > self._sent:
                conn.send_delta(qid, self.text[self._sent:], self._sent)
                self._sent = len(self.text)
        elif entry.kind == "reset":
            self.text = ""
            if self._sent:
                conn.send_reset(qid)
                self._sent = 0
        elif entry.kind == "done" and entry.done is not None:
            conn.send_done(entry.done)
            self._on_end("followed")
            return True
        elif entry.kind == "error":
            conn.send_query_error(qid, entry.code, entry.text)
            self._on_end("failed")
            return True
        return False
