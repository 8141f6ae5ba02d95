"""Connections and sessions as one replica holds them.

A ``Link`` is one websocket with its protocol core and the transport that drives it.
A ``Session`` is what a resume handle names: one device's conversation, which outlives
its connections for ``resume_ttl_s``. ``SessionTable`` keeps this replica's sessions
(with Redis, the registry in ``redis_state`` lets any replica resume them too).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection

from glasses_agent.clock import Clock
from glasses_agent.protocol import ServerConnection as ProtocolServer
from glasses_agent.protocol import ServerEvent
from glasses_agent.transport import Transport

__all__ = ["MAX_DETACHED_SESSIONS", "Link", "Session", "SessionTable"]

# Sessions of one device kept for a resume after their connection is gone (the newest).
MAX_DETACHED_SESSIONS = 16


class Link:
    """One websocket: its protocol core and the transport that drives it."""

    def __init__(self, ws: ServerConnection, conn: ProtocolServer, clock: Clock, *,
                 write_timeout_s: float) -> None:
        self.ws = ws
        self.conn = conn
        self.transport: Transport[ServerEvent] = Transport(ws, conn, clock,
                                                           write_timeout_s=write_timeout_s)
        self.session: Session | None = None
        try:
            host, port = ws.remote_address[:2]
            self.peer = f"{host}:{port}"
        except (TypeError, ValueError, OSError):
            self.peer = "?"

    def wake(self) -> None:
        self.transport.wake()


@dataclass(slots=True, kw_only=True, eq=False)
class Session:
    session_id: str
    resume_handle: str
    device_id: str
    link: Link | None = None
    detached_at_s: float | None = None


class SessionTable:
    """This replica's sessions by resume handle."""

    def __init__(self, *, resume_ttl_s: float) -> None:
        self.resume_ttl_s = resume_ttl_s
        self._by_handle: dict[str, Session] = {}

    def __len__(self) -> int:
        return len(self._by_handle)

    def find(self, handle: str, device_id: str) -> Session | None:
        """The session ``handle`` names, if it is this device's."""
        session = self._by_handle.get(handle) if handle else None
        return session if session is not None and session.device_id == device_id else None

    def new(self, device_id: str, *, session_id: str = "", handle: str = "") -> Session:
        """A new session (or, with ``session_id`` and ``handle``, one resumed from the
        shared registry), kept here."""
        session = Session(session_id=session_id or f"s-{secrets.token_hex(8)}",
                          resume_handle=handle or secrets.token_urlsafe(18),
                          device_id=device_id)
        self._by_handle[session.resume_handle] = session
        self._forget_old(device_id)
        return session

    def connected(self) -> list[Session]:
        return [s for s in self._by_handle.values() if s.link is not None]

    def expire(self, now_s: float) -> None:
        """Forget sessions detached for longer than the resume TTL."""
        for handle, session in list(self._by_handle.items()):
            if (session.link is None and session.detached_at_s is not None
                    and now_s - session.detached_at_s > self.resume_ttl_s):
                del self._by_handle[handle]

    def _forget_old(self, device_id: str) -> None:
        """A device keeps at most ``MAX_DETACHED_SESSIONS`` sessions waiting to be resumed
        (the newest): a device opening session after session cannot grow the table."""
        detached = [(s.detached_at_s, handle) for handle, s in self._by_handle.items()
                    if s.device_id == device_id and s.link is None and s.detached_at_s is not None]
        for _, handle in sorted(detached)[:max(0, len(detached) - MAX_DETACHED_SESSIONS)]:
            del self._by_handle[handle]
