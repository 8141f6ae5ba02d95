"""The glasses' network link, simulated: a TCP relay between the edge and the gateway that
can be cut and restored.

The edge connects to ``NetLink.url`` (127.0.0.1, a port of its own) and every byte
is relayed to the gateway and back, untouched (TLS included). ``cut()`` is the
network going away: every open connection is aborted at once (both ends see a
reset, as when a phone link drops) and new connections are reset as they come,
until ``restore()``. The edge's own reconnect logic does the rest; nothing in
the edge or the gateway knows the relay is there.

It runs on the asyncio loop that calls ``start()``; call ``cut``/``restore`` on that
loop (``loop.call_soon_threadsafe`` from another thread). The listening socket is
made in the constructor, so the URL is known before the loop runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from urllib.parse import urlsplit, urlunsplit

from glasses_agent.errors import BadInputError

__all__ = ["NetLink"]

_BUFFER = 65_536


class NetLink:
    """See the module docstring. ``up``: whether the link is there; ``cuts``: how many."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target_host = target_host
        self.target_port = target_port
        self.up = True
        self.cuts = 0
        self.connections = 0
        self._scheme = "ws"
        self._path = ""
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._socket.getsockname()[1])
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def to(cls, url: str) -> NetLink:
        """A link to the gateway at ``url`` (ws:// or wss://)."""
        parts = urlsplit(url)
        if parts.scheme not in ("ws", "wss") or not parts.hostname:
            raise BadInputError(f"cannot relay {url!r}: expected ws://HOST:PORT or wss://...")
        link = cls(parts.hostname, parts.port or (443 if parts.scheme == "wss" else 80))
        link._scheme = parts.scheme
        link._path = urlunsplit(("", "", parts.path, parts.query, ""))
        return link

    @property
    def url(self) -> str:
        """Where the edge connects (the relay), with the gateway's path."""
        return f"{self._scheme}://127.0.0.1:{self.port}{self._path}"

    async def start(self) -> NetLink:
        self._server = await asyncio.start_server(self._accept, sock=self._socket)
        return self

    async def __aenter__(self) -> NetLink:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def cut(self) -> None:
        """The network goes away: abort every connection, reset new ones."""
        self.up = False
        self.drop_connections()

    def drop_connections(self) -> None:
        """Abort every open connection (both ends see a reset); new ones are not affected."""
        self.cuts += 1
        for client, upstream in list(self._pairs):
            client.transport.abort()
            upstream.transport.abort()
        self._pairs.clear()

    def restore(self) -> None:
        self.up = True

    async def aclose(self) -> None:
        if self._server is not None:
            self._server.close()
        else:
            self._socket.close()
        self.cut()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _before_forwarding(self) -> None:
        """Called with each chunk before it is passed on: a subclass may hold it (a test's
        fault proxy delays or stalls the link here)."""

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        if not self.up:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(self.target_host,
                                                                 self.target_port)
        except OSError:
            writer.transport.abort()
            return
        if not self.up:  # cut while connecting
            writer.transport.abort()
            up_writer.transport.abort()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pump(src, dst, pair))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    pair: tuple[asyncio.StreamWriter, asyncio.StreamWriter]) -> None:
        try:
            while data := await src.read(_BUFFER):
                await self._before_forwarding()
                if pair not in self._pairs:
                    return
                dst.write(data)
                await dst.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            if pair in self._pairs:  # one side closed: close the other
                self._pairs.discard(pair)
                for w in pair:
                    w.transport.abort()
