"""The one asyncio adapter of the sans-I/O protocol: a core driven over one websocket.

The protocol core (``glasses_agent.protocol``: ``ServerConnection`` in the
gateway, ``ClientConnection`` on the edge) turns bytes into events and calls
into bytes to send, and reads no clock. ``Transport`` moves the bytes, for both
sides alike:

- the receive loop: each websocket message -> ``core.receive_*(data, now_s)`` ->
  each event to the caller's ``on_event``;
- the writer: whenever woken, sends what ``core.data_to_send()`` queued, in
  order; a ``Close`` ends it. Every write has a deadline (``write_timeout_s``):
  a peer that stops reading fills its TCP window, the write stalls, and at the
  deadline the connection is aborted (``stalled``), so a careless or hostile
  peer can hold neither the writer nor the memory behind it;
- the ticker: calls ``core.tick(now_s)`` when ``core.next_tick_s`` comes
  (heartbeats, the handshake and silence timeouts).

    transport = Transport(ws, core, clock)
    await transport.run(on_event)   # until the websocket is closed
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Generic, Protocol, TypeVar

from websockets.asyncio.connection import Connection
from websockets.exceptions import ConnectionClosed

from glasses_agent.clock import Clock
from glasses_agent.protocol import Close, Outgoing, State

__all__ = ["ProtocolCore", "Transport"]

logger = logging.getLogger("glasses_agent.transport")

EventT = TypeVar("EventT")


class ProtocolCore(Protocol[EventT]):
    """What ``Transport`` needs of a protocol core (both sides have it)."""

    @property
    def state(self) -> State: ...

    @property
    def next_tick_s(self) -> float: ...

    def receive_text(self, data: str, now_s: float) -> list[EventT]: ...

    def receive_bytes(self, data: bytes, now_s: float) -> list[EventT]: ...

    def data_to_send(self) -> list[Outgoing]: ...

    def tick(self, now_s: float) -> None: ...


class Transport(Generic[EventT]):
    """One websocket and its protocol core (see the module docstring)."""

    def __init__(self, ws: Connection, core: ProtocolCore[EventT], clock: Clock, *,
                 write_timeout_s: float = 10.0, close_grace_s: float = 2.0,
                 on_message: Callable[[str, str | bytes, float], None] | None = None) -> None:
        self.ws = ws
        # Told of every message as it went over the wire: ("sent" | "received", data, now_s).
        self.on_message = on_message
        self.core = core
        self.clock = clock
        self.write_timeout_s = write_timeout_s
        self.close_grace_s = close_grace_s
        self.stalled = False  # aborted: a write did not finish within write_timeout_s
        self._wake = asyncio.Event()
        self._rethink = asyncio.Event()

    def wake(self) -> None:
        """Something happened on the core: let the writer send what it queued, and the
        ticker look again at when it is next due (the handshake ends, a message came)."""
        self._wake.set()
        self._rethink.set()

    async def run(self, on_event: Callable[[EventT], Awaitable[None]]) -> None:
        """Receive until the websocket closes; the writer and the ticker run beside."""
        writer = asyncio.create_task(self._write(), name="transport-writer")
        ticker = asyncio.create_task(self._tick(), name="transport-ticker")
        self.wake()
        try:
            async for message in self.ws:
                now_s = self.clock.now_s()
                if self.on_message is not None:
                    self.on_message("received", message, now_s)
                if isinstance(message, str):
                    events = self.core.receive_text(message, now_s)
                else:
                    events = self.core.receive_bytes(message, now_s)
                for event in events:
                    await on_event(event)
                self.wake()
        except ConnectionClosed:
            pass
        finally:
            ticker.cancel()
            if self.core.state is State.CLOSING and not writer.done():
                # The core decided to close: let the writer send what leads to the Close.
                self.wake()
                with contextlib.suppress(TimeoutError, ConnectionClosed):
                    await asyncio.wait_for(asyncio.shield(writer), self.close_grace_s)
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await writer

    async def _write(self) -> None:
        step = "send"
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for item in self.core.data_to_send():
                    if isinstance(item, Close):
                        step = "close"
                        await self._deadline(self.ws.close(item.code, item.reason))
                        return
                    await self._deadline(self.ws.send(item))
                    if self.on_message is not None:
                        self.on_message("sent", item, self.clock.now_s())
        except ConnectionClosed:
            return
        except TimeoutError:
            self.stalled = step == "send"
            logger.info("connection %s %s: aborted after %g s", _peer(self.ws),
                        "does not read what is sent to it" if self.stalled
                        else "did not finish closing", self.write_timeout_s)
            self.ws.transport.abort()

    async def _deadline(self, step: Awaitable[Any]) -> None:
        await asyncio.wait_for(step, self.write_timeout_s)

    async def _tick(self) -> None:
        while self.core.state in (State.CONNECTING, State.OPEN):
            self._rethink.clear()
            due_in_s = self.core.next_tick_s - self.clock.now_s()
            if due_in_s > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._rethink.wait(), due_in_s)
                continue
            self.core.tick(self.clock.now_s())
            self._wake.set()


def _peer(ws: Connection) -> str:
    try:
        return str(ws.remote_address)
    except Exception:  # the socket may already be gone
        return "?"
