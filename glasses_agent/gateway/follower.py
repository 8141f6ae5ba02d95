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
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from glasses_agent.gateway.redis_state import StreamEntry
from glasses_agent.gateway.sessions import Link
from glasses_agent.gateway.shared import SharedState, SharedStateDown

__all__ = ["Follower"]


class Follower:
    """Follows one query's stream for one link (see the module docstring).

    ``take_over(had_chars)`` returns True when the query ended or is generated here
    now, False when another replica holds it (keep following)."""

    def __init__(self, shared: SharedState, link: Link, device_id: str, query_id: str, *,
                 resume_from: int, take_over: Callable[[int], Awaitable[bool]],
                 on_end: Callable[[str], None]) -> None:
        self.shared = shared
        self.link = link
        self.device_id = device_id
        self.query_id = query_id
        self.text = ""  # the stream's text of the run being followed
        self._sent = resume_from  # characters the edge has
        self._after = "0-0"
        self._take_over = take_over
        self._on_end = on_end
        state = shared.state
        self._block_ms = max(50, min(500, int(state.timeout_s * 500), state.lease_ms // 2))
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
        try:
            while True:
                try:
                    entries = await self.shared.call(state.read, self.device_id, self.query_id,
                                                     self._after, self._block_ms)
                    if not entries and await self._quiet():
                        return
                except SharedStateDown:
                    # Nobody can tell what the generator does: answer here (degraded mode).
                    await self._take_over(self._sent)
                    return
                for entry in entries:
                    self._after = entry.entry_id
                    if self._apply(entry):
                        return
                self.link.wake()
                if entries and entries[-1].kind == "gone" and await self._quiet():
                    return  # the generator gave the query up (it is shutting down)
        finally:
            self.link.wake()

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
