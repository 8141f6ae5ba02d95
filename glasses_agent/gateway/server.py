"""The cloud gateway: a websockets server around the sans-I/O protocol core.

One ``ServerConnection`` per websocket, driven by ``glasses_agent.transport``;
device tokens are checked by ``auth``. This module routes what the edges send;
the parts it routes to are split by concern:

- **Sessions** (``sessions``): a resume handle names a session of one device; a
  reconnect that presents it within ``resume_ttl_s`` continues the session.
- **Jobs** (``jobs``), keyed by (device id, query id): an answer keeps being
  generated while its edge is away, and a re-sent query attaches to it
  (streaming from the character the edge already has) instead of starting a
  second run.
- **Answers** (``stores.AnswerStore``), keyed by (device id, query id): finished
  and cancelled answers, kept ``answer_ttl_s``. A re-sent query that is already
  answered gets its stored ``answer.done`` (``replayed``) and no new run;
  ``SqliteAnswerStore`` (``[gateway] answers_db``) keeps them across a restart.
- **Replicas** (``[gateway] redis_url``, ``shared``): sessions, answers, the
  per-device limits and each running answer's text live in Redis, so any replica
  resumes any session; a query generated on another replica is streamed from
  there (``follower``) and taken over when that replica dies. While Redis is
  unreachable the replica answers on its own (degraded mode) and recovers by itself.
- **HTTP** on the same port (``metrics``): ``/healthz``, ``/readyz``, ``/metrics``.

"Exactly once", with a restart in the middle: the edge gets one ``answer.done``
per query id. An answer that was finished (stored) is replayed, never
generated again. An answer cut off by the restart was not stored: it is
generated again from the start, and the edge is told with ``answer.reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.config import Config, GatewayConfig
from glasses_agent.errors import BadInputError
from glasses_agent.gateway.auth import TokenTable, server_ssl_context
from glasses_agent.gateway.fairness import FairScheduler, TokenBucket
from glasses_agent.gateway.follower import Follower, StreamHub
from glasses_agent.gateway.jobs import Jobs, printable
from glasses_agent.gateway.metrics import GatewayMetrics, http_endpoint
from glasses_agent.gateway.reasoning import ReasoningBackend, make_backend
from glasses_agent.gateway.redis_state import RedisState
from glasses_agent.gateway.sessions import Link, Session, SessionTable
from glasses_agent.gateway.shared import SharedState, SharedStateDown
from glasses_agent.gateway.stores import AnswerStore, open_answer_store
from glasses_agent.protocol import (
    AnswerDone,
    CancelReceived,
    CloseCode,
    ErrorCode,
    ErrorReceived,
    HelloReceived,
    Limits,
    ProtocolViolation,
    QueryReceived,
    ServerEvent,
)
from glasses_agent.protocol import ServerConnection as ProtocolServer

__all__ = ["Gateway", "gateway_config_with"]

logger = logging.getLogger("glasses_agent.gateway")

P = ParamSpec("P")
T = TypeVar("T")
Key = tuple[str, str]


class Gateway:
    """The websocket server. ``async with Gateway(config) as gateway:`` serves on
    ``gateway.url`` until the block ends (or ``shutdown()``); ``run_until_stopped``
    is the CLI's loop."""

    def __init__(
        self,
        config: Config,
        *,
        backend: ReasoningBackend | None = None,
        tokens: TokenTable | None = None,
        store: AnswerStore | None = None,
        clock: Clock | None = None,
        host: str | None = None,
        port: int | None = None,
    ) -> None:
        self.config = config
        gw = config.gateway
        _check(gw)
        self.host = gw.host if host is None else host
        self.port = gw.port if port is None else port
        self.tokens = tokens if tokens is not None else TokenTable.from_config(gw)
        self._ssl = server_ssl_context(gw)
        self.replica_id = _replica_id(gw.replica_id)
        self.metrics = GatewayMetrics()
        self.shared = _shared_state(gw, self.replica_id, self.metrics)
        self.backend = backend if backend is not None else make_backend(config)
        self.store = store if store is not None else open_answer_store(gw)
        self._clock = clock or MonotonicClock()
        self.limits = Limits(
            max_message_bytes=gw.max_message_bytes,
            max_queries_in_flight=gw.max_queries_in_flight,
            heartbeat_s=gw.heartbeat_s,
            max_send_queue=gw.max_send_queue,
        )
        self.scheduler = FairScheduler(gw.backend_slots)
        self._rates = TokenBucket(rate_per_s=gw.device_queries_per_min / 60.0,
                                  burst=gw.device_burst)
        self._sessions = SessionTable(resume_ttl_s=gw.resume_ttl_s)
        self.jobs = Jobs(config, backend=self.backend, store=self.store,
                         scheduler=self.scheduler, clock=self._clock, metrics=self.metrics,
                         shared=self.shared)
        self._followers: dict[Key, Follower] = {}
        self._hub = StreamHub(self.shared) if self.shared is not None else None
        self._links: set[Link] = set()
        self._server: Server | None = None
        self._background: list[asyncio.Task[None]] = []
        self._chores: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.metrics.sessions.set_function(lambda: self.sessions)

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def sessions(self) -> int:
        return len(self._sessions.connected())

    @property
    def answers_generated(self) -> int:
        """Backend runs that finished here (for tests and logs)."""
        return self.jobs.answers_generated

    @property
    def answers_dropped(self) -> int:
        return self.jobs.answers_dropped

    async def start(self) -> None:
        """Listen. With port 0, ``port`` is the one the system chose."""
        if self.shared is not None:
            await self.shared.start()
            self.shared.on_recovered = self._register_sessions
            self._background.append(asyncio.create_task(
                self.shared.renew_forever(self.jobs.leases, self.jobs.lost), name="leases"))
        self._server = await serve(
            self._handle, self.host, self.port, ssl=self._ssl,
            max_size=self.limits.max_message_bytes, compression=None,
            ping_interval=None, server_header=None, open_timeout=10, close_timeout=2,
            process_request=self._http,
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._background.append(asyncio.create_task(self._sweep(), name="sweep"))
        logger.info("gateway %s listening on %s (backend %s, %s)", self.replica_id, self.url,
                    self.backend.name, self.shared_state)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def run_until_stopped(self) -> None:
        await self._stopped.wait()

    async def shutdown(self, *, reconnect_after_s: float = 0.5, timeout_s: float = 5.0) -> None:
        """Stop accepting, tell every edge ``going_away`` (close 1001), then (with Redis)
        let the running answers finish for up to ``drain_s`` while their edges follow
        them from another replica; stop the rest."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=False)
        for link in list(self._links):
            link.conn.going_away(reason="gateway shutting down",
                                 reconnect_after_s=reconnect_after_s)
            link.wake()
        if self.shared is not None and self.shared.up and self.config.gateway.drain_s > 0:
            await self.jobs.drain(self.config.gateway.drain_s)
        for task in self._background:
            task.cancel()
        await self.jobs.stop()
        await asyncio.gather(*(f.stop() for f in list(self._followers.values())),
                             *self._background, *self._chores, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout_s)
        await self.backend.aclose()
        await self.store.aclose()
        if self._hub is not None:
            await self._hub.aclose()
        if self.shared is not None:
            await self.shared.aclose()
        self._stopped.set()

    def stop_soon(self) -> None:
        """From a signal handler: shut down in the background."""
        if not self._stopping:
            asyncio.get_running_loop().create_task(self.shutdown())

    @property
    def shared_state(self) -> str:
        """Where the shared state is, in words (for logs)."""
        if self.shared is None:
            return "state in this process only"
        return f"shared state in Redis at {self.shared.url}"

    def health(self) -> dict[str, Any]:
        """The body of ``/healthz`` (see docs/protocol.md, "Replicas")."""
        redis = ("not used" if self.shared is None
                 else "up" if self.shared.up else "unreachable")
        status = ("draining" if self._stopping
                  else "degraded" if redis == "unreachable" else "ok")
        return {
            "status": status, "replica": self.replica_id, "sessions": self.sessions,
            "answers_running": len(self.jobs), "answers_followed": len(self._followers),
            "redis": redis,
            # A re-sent query is answered once whichever replica it reaches (Redis up), or
            # when it reaches this replica again (no Redis; degraded: this replica only).
            "exactly_once_across_replicas": redis == "up",
        }

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        return http_endpoint(connection, request, metrics=self.metrics, health=self.health)

    async def _sweep(self) -> None:
        gw = self.config.gateway
        period_s = max(0.5, min(gw.resume_ttl_s, gw.answer_ttl_s, 60.0) / 2)
        while True:
            await asyncio.sleep(period_s)
            self._sessions.expire(self._clock.now_s())
            self._rates.forget_full(self._clock.now_s())
            try:
                await self.store.expire(time.time())
            except Exception:  # a store outage must not stop the sweeps
                logger.exception("answer store expiry failed")
            await self._register_sessions(quiet=True)

    async def _register_sessions(self, *, quiet: bool = False) -> None:
        """Tell Redis which sessions this replica holds (refreshing their resume TTL). On
        recovery from an outage (``quiet`` False) a failure stays an error."""
        if self.shared is None:
            return
        held = [(s.device_id, s.resume_handle, s.session_id) for s in self._sessions.connected()]
        if quiet:
            await self._try(self.shared.state.hold_sessions, held)
        else:
            await self.shared.state.hold_sessions(held)

    async def _try(self, op: Callable[P, Awaitable[T]], *args: P.args,
                   **kwargs: P.kwargs) -> T | None:
        """``op`` on the shared state; None when there is none or Redis is unreachable."""
        if self.shared is None or not self.shared.up:
            return None
        with contextlib.suppress(SharedStateDown):
            return await self.shared.call(op, *args, **kwargs)
        return None

    def _chore(self, coro: Awaitable[Any]) -> None:
        """Run ``coro`` in the background (kept until done, awaited at shutdown)."""
        async def run() -> None:
            await coro
        task = asyncio.get_running_loop().create_task(run())
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    # --- one connection ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        link = Link(ws, ProtocolServer(self.limits, self._clock.now_s()), self._clock,
                    write_timeout_s=self.config.gateway.write_timeout_s)
        if self._stopping:
            link.conn.going_away(reason="gateway shutting down")
        self._links.add(link)

        async def on_event(event: ServerEvent) -> None:
            try:
                await self._on_event(link, event)
            except Exception:  # a bug here ends this connection only, never the gateway
                logger.exception("connection handler failed")
                link.conn.refuse(code=ErrorCode.INTERNAL_ERROR, message="internal error",
                                 close_code=CloseCode.INTERNAL_ERROR)

        try:
            await link.transport.run(on_event)
        finally:
            self._links.discard(link)
            link.conn.connection_closed()
            self._detach(link)

    def _detach(self, link: Link) -> None:
        session = link.session
        for job in self.jobs:
            if job.link is link:
                job.link = None
        for follower in [f for f in self._followers.values() if f.link is link]:
            self._chore(follower.stop())
        if session is not None and session.link is link:
            session.link = None
            session.detached_at_s = self._clock.now_s()
            if self.shared is not None:
                self._chore(self._try(self.shared.state.release_session, session.device_id,
                                      session.resume_handle))
            if not self._stopping:
                asyncio.get_running_loop().call_later(
                    self.config.gateway.orphan_grace_s, self._drop_orphans, session)

    def _drop_orphans(self, session: Session) -> None:
        """The session went away and did not come back here: nobody will read its
        answers, unless another replica holds its connection now (it follows them)."""
        if session.link is not None or self._stopping:
            return
        if self.shared is None:
            self._drop_jobs_of(session)
        else:
            self._chore(self._drop_unless_held_elsewhere(session))

    async def _drop_unless_held_elsewhere(self, session: Session) -> None:
        holder = await self._try(self.shared.state.session_holder, session.device_id,
                                 session.resume_handle) if self.shared else None
        if holder and holder != self.replica_id:
            asyncio.get_running_loop().call_later(
                self.config.gateway.orphan_grace_s, self._drop_orphans, session)
        elif session.link is None:
            self._drop_jobs_of(session)

    def _drop_jobs_of(self, session: Session) -> None:
        for job in self.jobs:
            if job.session is session and job.link is None:
                self.jobs.drop(job)

    async def _on_event(self, link: Link, event: ServerEvent) -> None:
        if isinstance(event, HelloReceived):
            await self._on_hello(link, event)
        elif isinstance(event, QueryReceived):
            await self._on_query(link, event)
        elif isinstance(event, CancelReceived):
            await self._on_cancel(link, event)
        elif isinstance(event, ProtocolViolation):
            # What a client sends is escaped: a device must not forge log lines.
            logger.info("protocol error from %s: %s (%s)", link.peer, printable(event.code),
                        printable(event.message))
        elif isinstance(event, ErrorReceived):
            logger.info("the edge %s reports %s (%s)", link.peer,
                        printable(event.error.code), printable(event.error.message))

    async def _on_hello(self, link: Link, event: HelloReceived) -> None:
        device_id = self.tokens.device_for(event.hello.token)
        if device_id is None:
            link.conn.refuse(code=ErrorCode.UNAUTHORIZED, message="missing or wrong device token",
                             close_code=CloseCode.UNAUTHORIZED)
            return
        session, source = await self._find_session(device_id, event.hello.resume)
        if session is None:
            session = self._sessions.new(device_id)
        else:
            self.metrics.resumes.labels(source).inc()
        old = session.link
        if old is not None and old is not link:
            old.conn.refuse(code=ErrorCode.SESSION_REPLACED,
                            message="a newer connection resumed this "
                            "session", close_code=CloseCode.SESSION_REPLACED)
            old.wake()
            for job in self.jobs:
                if job.link is old:
                    job.link = None
        session.link = link
        session.detached_at_s = None
        link.session = session
        if self.shared is not None:
            await self._try(self.shared.state.hold_sessions,
                            [(device_id, session.resume_handle, session.session_id)])
        link.conn.accept(session_id=session.session_id, resume_handle=session.resume_handle,
                         resumed=source != "")

    async def _find_session(self, device_id: str, handle: str) -> tuple[Session | None, str]:
        """The session ``handle`` names for this device, held here (``local``) or found in
        Redis (``shared``); (None, "") when the handle is unknown, expired, made up or
        another device's."""
        session = self._sessions.find(handle, device_id)
        if session is not None:
            return session, "local"
        if not handle or self.shared is None:
            return None, ""
        record = await self._try(self.shared.state.find_session, device_id, handle)
        if record is None:
            return None, ""
        return self._sessions.new(device_id, session_id=record.session_id, handle=handle), "shared"

    async def _on_query(self, link: Link, event: QueryReceived) -> None:
        session = link.session
        assert session is not None  # the core emits queries only after accept()
        qid = event.request.query_id
        key = (session.device_id, qid)
        if self._attach(link, key, event.request.resume_from):
            return
        if self._stopping:  # going_away is sent: the edge asks again elsewhere
            self._refuse(link, qid, ErrorCode.GOING_AWAY, "the gateway is shutting down")
            return
        stored = await self.store.get(session.device_id, qid, time.time())
        if stored is not None:
            self._replay(link, stored)
            return
        if self._attach(link, key, event.request.resume_from):  # started while we looked
            return
        if self.shared is not None and self.shared.up and await self._on_query_shared(
                link, session, event):
            return
        refusal = self._refusal(session.device_id)
        if refusal is not None:
            self._refuse(link, qid, *refusal)
            return
        self._start(link, session, event, shared=False)

    def _replay(self, link: Link, done: AnswerDone) -> None:
        if link.conn.send_done(dataclasses.replace(done, replayed=True)):
            self.metrics.queries.labels("replayed").inc()

    def _refuse(self, link: Link, query_id: str, code: ErrorCode, message: str) -> None:
        if link.conn.send_query_error(query_id, code, message):
            self.metrics.queries.labels(code.value).inc()

    def _start(self, link: Link, session: Session, event: QueryReceived, *,
               shared: bool) -> None:
        if event.request.resume_from:
            link.conn.send_reset(event.request.query_id)
        self.jobs.start(link, session, event, shared=shared)

    async def _on_query_shared(self, link: Link, session: Session, event: QueryReceived) -> bool:
        """Redis decides (one round trip): replay, follow another replica's run, refuse
        for the device's limits across replicas, or generate here. False: Redis just
        became unreachable (the caller goes on alone)."""
        assert self.shared is not None
        gw, qid = self.config.gateway, event.request.query_id
        claim = await self._try(self.shared.state.claim, session.device_id, qid,
                                session.session_id, max_in_flight=gw.max_queries_in_flight,
                                queries_per_min=gw.device_queries_per_min, burst=gw.device_burst)
        if claim is None:
            return False
        if claim.outcome == "answered" and claim.done is not None:
            self._replay(link, claim.done)
        elif claim.outcome == "busy":
            self._refuse(link, qid, ErrorCode.BUSY, f"{claim.in_flight} answers of this device "
                         "are waiting or being generated")
        elif claim.outcome == "rate_limited":
            self._refuse(link, qid, ErrorCode.RATE_LIMITED, _rate_message(gw, claim.retry_s))
        elif claim.outcome == "running":
            if claim.owner != self.replica_id or not self._attach(
                    link, (session.device_id, qid), event.request.resume_from):
                self._follow(link, session, event)
        else:
            self._start(link, session, event, shared=True)
        return True

    def _follow(self, link: Link, session: Session, event: QueryReceived) -> None:
        """Stream another replica's run of this query to ``link``."""
        assert self._hub is not None
        key = (session.device_id, event.request.query_id)
        old = self._followers.pop(key, None)
        if old is not None:
            self._chore(old.stop())

        async def take_over(had_chars: int) -> bool:
            return await self._take_over(link, event, had_chars)

        def on_end(outcome: str) -> None:
            self.metrics.queries.labels(outcome).inc()

        follower = Follower(self._hub, link, key[0], key[1],
                            resume_from=event.request.resume_from, take_over=take_over,
                            on_end=on_end)
        self._followers[key] = follower
        follower.start()
        assert follower.task is not None
        follower.task.add_done_callback(
            lambda _: self._followers.pop(key, None) if self._followers.get(key) is follower
            else None)

    async def _take_over(self, link: Link, event: QueryReceived, had_chars: int) -> bool:
        """The replica generating this query is gone: generate it here (True), unless it
        is answered meanwhile (True) or another replica took it first (False)."""
        session = link.session
        if session is None or self._stopping:
            return True
        qid = event.request.query_id
        resent = dataclasses.replace(event, request=dataclasses.replace(
            event.request, resume_from=had_chars))
        claim = None
        if self.shared is not None:
            claim = await self._try(self.shared.state.claim, session.device_id, qid,
                                    session.session_id, max_in_flight=1, queries_per_min=1.0,
                                    burst=1, takeover=True)
        if claim is not None and claim.outcome == "running":
            return False
        if claim is not None and claim.outcome == "answered" and claim.done is not None:
            link.conn.send_done(claim.done)
            return True
        logger.info("taking over answer %s (its replica is gone)", printable(qid))
        self.metrics.takeovers.inc()
        self._start(link, session, resent, shared=claim is not None)
        link.wake()
        return True

    def _refusal(self, device_id: str) -> tuple[ErrorCode, str] | None:
        """Why a new answer for ``device_id`` cannot start now (None: it can), on this
        replica's own counts (no Redis, or Redis unreachable)."""
        if self._stopping:
            return ErrorCode.GOING_AWAY, "the gateway is shutting down"
        gw = self.config.gateway
        in_flight = self.jobs.in_flight(device_id)
        if in_flight >= gw.max_queries_in_flight:
            return ErrorCode.BUSY, (f"{in_flight} answers of this device are waiting or being "
                                    "generated")
        if not self._rates.allow(device_id, self._clock.now_s()):
            return ErrorCode.RATE_LIMITED, _rate_message(gw, self._rates.retry_after_s(device_id))
        return None

    def _attach(self, link: Link, key: Key, resume_from: int) -> bool:
        """A query already being answered here: stream it to ``link`` from ``resume_from``
        on (a resume), or refuse it when another live session of the device holds it."""
        job = self.jobs.get(key)
        if job is None or job.ended:
            return False
        holder = job.link
        if holder is not None and holder is not link and holder.session is not link.session \
                and holder in self._links:
            self._refuse(link, key[1], ErrorCode.DUPLICATE_QUERY,
                         f"query {key[1]} is being answered on another connection of this "
                         "device")
            return True
        job.link = link
        if resume_from > len(job.text):
            link.conn.send_reset(key[1])
            resume_from = 0
        link.conn.send_delta(key[1], job.text[resume_from:], resume_from)
        return True

    async def _on_cancel(self, link: Link, event: CancelReceived) -> None:
        session = link.session
        assert session is not None
        key = (session.device_id, event.query_id)
        job = self.jobs.get(key)
        if job is not None and job.task is not None and not job.ended:
            if job.first_delta_s is None:  # taken back before any answer: it costs nothing
                await self._refund(job.device_id, shared=job.writer is not None)
            self.jobs.barge_in(job, link, event.heard_chars)
            return
        text = ""
        follower = self._followers.pop(key, None)
        if follower is not None and self.shared is not None:
            text = follower.text
            await follower.stop()
            await self._try(self.shared.state.request_cancel, key[0], key[1], event.heard_chars)
        if link.conn.send_done(AnswerDone(query_id=event.query_id, text=text, cancelled=True,
                                          heard_chars=event.heard_chars)):
            self.metrics.queries.labels("cancelled").inc()

    async def _refund(self, device_id: str, *, shared: bool) -> None:
        if shared and self.shared is not None:
            await self._try(self.shared.state.refund, device_id, self.config.gateway.device_burst)
        else:
            self._rates.refund(device_id)


def _rate_message(gw: GatewayConfig, wait_s: float) -> str:
    return (f"more than {gw.device_queries_per_min:g} questions a minute from this device; "
            f"ask again in {wait_s:.1f} s")


def _replica_id(name: str) -> str:
    """``name`` (default: the host name and the process id) and a random tag: a replica
    started again under the same name is a new replica (it holds none of the old leases)."""
    if not name:
        name = f"{socket.gethostname().split('.')[0] or 'gateway'}-{os.getpid()}"
    return f"{name}-{secrets.token_hex(3)}"


def _shared_state(gw: GatewayConfig, replica_id: str,
                  metrics: GatewayMetrics) -> SharedState | None:
    if not gw.redis_url:
        return None
    state = RedisState(gw.redis_url, replica_id=replica_id, lease_s=gw.lease_s,
                       resume_ttl_s=gw.resume_ttl_s, answer_ttl_s=gw.answer_ttl_s,
                       timeout_s=gw.redis_timeout_s)
    return SharedState(state, url=gw.redis_url, metrics=metrics)


def _check(gw: GatewayConfig) -> None:
    """Settings that cannot work are one clear line, before anything listens."""
    problems = [
        f"gateway.{name} must be {rule}, not {getattr(gw, name)}"
        for name, rule, ok in (
            ("max_queries_in_flight", "at least 1", gw.max_queries_in_flight >= 1),
            ("device_queries_per_min", "above 0", gw.device_queries_per_min > 0),
            ("device_burst", "at least 1", gw.device_burst >= 1),
            ("backend_slots", "at least 1", gw.backend_slots >= 1),
            ("orphan_grace_s", "0 or more", gw.orphan_grace_s >= 0),
            ("write_timeout_s", "above 0", gw.write_timeout_s > 0),
            ("max_send_queue", "at least 8", gw.max_send_queue >= 8),
            ("lease_s", "at least 0.3", gw.lease_s >= 0.3),
            ("drain_s", "0 or more", gw.drain_s >= 0),
            ("redis_timeout_s", "above 0", gw.redis_timeout_s > 0),
            ("replica_id", "one word (no spaces)", len(gw.replica_id.split()) <= 1
             and gw.replica_id == gw.replica_id.strip()),
            ("redis_url", "redis://, rediss:// or unix://", not gw.redis_url
             or gw.redis_url.startswith(("redis://", "rediss://", "unix://"))),
        ) if not ok
    ]
    if problems:
        raise BadInputError("; ".join(problems))


def gateway_config_with(config: Config, **changes: Any) -> Config:
    """``config`` with some ``[gateway]`` keys changed (the CLI flags)."""
    kept: Mapping[str, Any] = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(config, gateway=dataclasses.replace(config.gateway, **kept))
