"""The cloud gateway: a websockets server around the sans-I/O protocol core.

One ``ServerConnection`` per websocket, driven by ``glasses_agent.transport``;
device tokens are checked by ``auth``; this module runs one reasoning job per
query and keeps what resuming needs:

- **Sessions** (in memory): a resume handle names a session of one device; a
  reconnect that presents it within ``resume_ttl_s`` continues the session.
- **Jobs** (in memory), keyed by (device id, query id): an answer keeps being
  generated while its edge is away, and a re-sent query attaches to it
  (streaming from the character the edge already has) instead of starting a
  second run.
- **Answers** (``AnswerStore``), keyed by (device id, query id): finished and
  cancelled answers, kept ``answer_ttl_s``. A re-sent query that is already
  answered gets its stored ``answer.done`` (``replayed``) and no new run. The
  store (``stores``) is an object with four async methods so a shared one can
  replace it; ``SqliteAnswerStore`` (``[gateway] answers_db``) keeps the
  answered ids across a restart of the gateway.

"Exactly once", with a restart in the middle: the edge gets one ``answer.done``
per query id. An answer that was finished (stored) is replayed, never
generated again. An answer cut off by the restart was not stored: it is
generated again from the start, and the edge is told with ``answer.reset``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve

from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.config import Config, GatewayConfig
from glasses_agent.errors import BadInputError
from glasses_agent.gateway.auth import TokenTable, server_ssl_context
from glasses_agent.gateway.contemplate import contemplate
from glasses_agent.gateway.fairness import FairScheduler, TokenBucket
from glasses_agent.gateway.reasoning import (
    BackendError,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    estimate_usage,
    make_backend,
    pop_usage,
)
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
from glasses_agent.transport import Transport

__all__ = ["Gateway", "gateway_config_with"]

logger = logging.getLogger("glasses_agent.gateway")

# Sessions of one device kept for a resume after their connection is gone (the newest).
MAX_DETACHED_SESSIONS = 16


# --- sessions, connections, jobs ------------------------------------------------------------


@dataclass(slots=True, kw_only=True, eq=False)
class _Session:
    session_id: str
    resume_handle: str
    device_id: str
    link: _Link | None = None
    detached_at_s: float | None = None


class _Link:
    """One websocket: its protocol core and the transport that drives it."""

    def __init__(self, ws: ServerConnection, conn: ProtocolServer, clock: Clock, *,
                 write_timeout_s: float) -> None:
        self.ws = ws
        self.conn = conn
        self.transport: Transport[ServerEvent] = Transport(ws, conn, clock,
                                                           write_timeout_s=write_timeout_s)
        self.session: _Session | None = None
        try:
            host, port = ws.remote_address[:2]
            self.peer = f"{host}:{port}"
        except (TypeError, ValueError, OSError):
            self.peer = "?"

    def wake(self) -> None:
        self.transport.wake()


@dataclass(slots=True, kw_only=True, eq=False)
class _Job:
    device_id: str
    session: _Session
    request: ReasoningRequest
    started_s: float
    link: _Link | None = None
    text: str = ""
    first_delta_s: float | None = None
    barge_in: bool = False
    heard_chars: int = 0
    usage: Usage | None = None  # contemplating mode: its sub-agents' counts, added up
    task: asyncio.Task[None] | None = None
    # The job's one ending (answer.done or an error) has been decided.
    ended: bool = False

    def set_usage(self, usage: Usage) -> None:
        self.usage = usage


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
        self._sessions: dict[str, _Session] = {}
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._links: set[_Link] = set()
        self._server: Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._stopped = asyncio.Event()
        self.answers_generated = 0  # backend runs that finished (for tests and logs)
        self.answers_dropped = 0  # runs dropped: their session went away and did not return

    @property
    def url(self) -> str:
        scheme = "wss" if self._ssl else "ws"
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def sessions(self) -> int:
        return sum(1 for s in self._sessions.values() if s.link is not None)

    async def start(self) -> None:
        """Listen. With port 0, ``port`` is the one the system chose."""
        self._server = await serve(
            self._handle, self.host, self.port, ssl=self._ssl,
            max_size=self.limits.max_message_bytes, compression=None,
            ping_interval=None, server_header=None, open_timeout=10, close_timeout=2,
        )
        sockets = list(self._server.sockets)
        if sockets:
            self.port = int(sockets[0].getsockname()[1])
        self._housekeeping = asyncio.create_task(self._sweep())
        logger.info("gateway listening on %s (backend %s)", self.url, self.backend.name)

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.shutdown()

    async def run_until_stopped(self) -> None:
        await self._stopped.wait()

    async def shutdown(self, *, reconnect_after_s: float = 0.5, timeout_s: float = 5.0) -> None:
        """Stop accepting, tell every edge ``going_away`` (close 1001), stop the jobs."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        if self._housekeeping:
            self._housekeeping.cancel()
        if self._server is not None:
            self._server.close(close_connections=False)
        for link in list(self._links):
            link.conn.going_away(reason="gateway shutting down",
                                 reconnect_after_s=reconnect_after_s)
            link.wake()
        jobs = [job.task for job in self._jobs.values() if job.task]
        for task in jobs:
            task.cancel()
        await asyncio.gather(*jobs, *self._finishing, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), timeout_s)
        await self.backend.aclose()
        await self.store.aclose()
        self._stopped.set()

    def stop_soon(self) -> None:
        """From a signal handler: shut down in the background."""
        if not self._stopping:
            asyncio.get_running_loop().create_task(self.shutdown())

    async def _sweep(self) -> None:
        gw = self.config.gateway
        period_s = max(0.5, min(gw.resume_ttl_s, gw.answer_ttl_s, 60.0) / 2)
        while True:
            await asyncio.sleep(period_s)
            now_s = self._clock.now_s()
            for handle, session in list(self._sessions.items()):
                if (session.link is None and session.detached_at_s is not None
                        and now_s - session.detached_at_s > gw.resume_ttl_s):
                    del self._sessions[handle]
            self._rates.forget_full(now_s)
            try:
                await self.store.expire(time.time())
            except Exception:  # a store outage must not stop the sweeps
                logger.exception("answer store expiry failed")

    # --- one connection ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        link = _Link(ws, ProtocolServer(self.limits, self._clock.now_s()), self._clock,
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

    def _detach(self, link: _Link) -> None:
        session = link.session
        for job in self._jobs.values():
            if job.link is link:
                job.link = None
        if session is not None and session.link is link:
            session.link = None
            session.detached_at_s = self._clock.now_s()
            if not self._stopping:
                asyncio.get_running_loop().call_later(
                    self.config.gateway.orphan_grace_s, self._drop_orphans, session)

    def _drop_orphans(self, session: _Session) -> None:
        """The session went away and did not come back: nobody will read its answers."""
        if session.link is not None:
            return
        for job in list(self._jobs.values()):
            if job.session is session and job.link is None and not job.ended:
                logger.info("dropping answer %s of a session gone for %g s",
                            _printable(job.request.query_id), self.config.gateway.orphan_grace_s)
                self.answers_dropped += 1
                if job.task is not None:
                    job.task.cancel()

    async def _on_event(self, link: _Link, event: ServerEvent) -> None:
        if isinstance(event, HelloReceived):
            self._on_hello(link, event)
        elif isinstance(event, QueryReceived):
            await self._on_query(link, event)
        elif isinstance(event, CancelReceived):
            self._on_cancel(link, event)
        elif isinstance(event, ProtocolViolation):
            # What a client sends is escaped: a device must not forge log lines.
            logger.info("protocol error from %s: %s (%s)", link.peer, _printable(event.code),
                        _printable(event.message))
        elif isinstance(event, ErrorReceived):
            logger.info("the edge %s reports %s (%s)", link.peer,
                        _printable(event.error.code), _printable(event.error.message))

    def _on_hello(self, link: _Link, event: HelloReceived) -> None:
        device_id = self.tokens.device_for(event.hello.token)
        if device_id is None:
            link.conn.refuse(code=ErrorCode.UNAUTHORIZED, message="missing or wrong device token",
                             close_code=CloseCode.UNAUTHORIZED)
            return
        session = self._sessions.get(event.hello.resume) if event.hello.resume else None
        resumed = session is not None and session.device_id == device_id
        if session is None or not resumed:
            handle = secrets.token_urlsafe(18)
            session = _Session(session_id=f"s-{secrets.token_hex(8)}", resume_handle=handle,
                               device_id=device_id)
            self._sessions[handle] = session
            self._forget_old_sessions(device_id)
        old = session.link
        if old is not None and old is not link:
            old.conn.refuse(code=ErrorCode.SESSION_REPLACED,
                            message="a newer connection resumed this "
                            "session", close_code=CloseCode.SESSION_REPLACED)
            old.wake()
            for job in self._jobs.values():
                if job.link is old:
                    job.link = None
        session.link = link
        session.detached_at_s = None
        link.session = session
        link.conn.accept(session_id=session.session_id, resume_handle=session.resume_handle,
                         resumed=resumed)

    def _forget_old_sessions(self, device_id: str) -> None:
        """A device keeps at most ``MAX_DETACHED_SESSIONS`` sessions waiting to be resumed
        (the newest): a device opening session after session cannot grow the table."""
        detached = [(s.detached_at_s, handle) for handle, s in self._sessions.items()
                    if s.device_id == device_id and s.link is None and s.detached_at_s is not None]
        for _, handle in sorted(detached)[:max(0, len(detached) - MAX_DETACHED_SESSIONS)]:
            del self._sessions[handle]

    async def _on_query(self, link: _Link, event: QueryReceived) -> None:
        session = link.session
        assert session is not None  # the core emits queries only after accept()
        request = event.request
        qid = request.query_id
        key = (session.device_id, qid)
        if self._attach(link, key, request.resume_from):
            return
        stored = await self.store.get(session.device_id, qid, time.time())
        if stored is not None:
            link.conn.send_done(dataclasses.replace(stored, replayed=True))
            return
        if self._attach(link, key, request.resume_from):  # started while we looked
            return
        refusal = self._refusal(session.device_id)
        if refusal is not None:
            link.conn.send_query_error(qid, *refusal)
            return
        if request.resume_from:
            link.conn.send_reset(qid)
        job = _Job(
            device_id=session.device_id, session=session, link=link,
            started_s=self._clock.now_s(),
            request=ReasoningRequest(
                query_id=qid, text=request.text, facts=request.facts,
                images_jpeg=event.images_jpeg, max_tokens=request.max_tokens,
                contemplate=request.contemplate,
            ),
        )
        self._jobs[key] = job
        job.task = asyncio.create_task(self._run(job, key), name=f"answer {qid}")
        job.task.add_done_callback(functools.partial(self._job_done, job, key))

    def _refusal(self, device_id: str) -> tuple[ErrorCode, str] | None:
        """Why a new answer for ``device_id`` cannot start now (None: it can)."""
        if self._stopping:
            return ErrorCode.GOING_AWAY, "the gateway is shutting down"
        gw = self.config.gateway
        in_flight = sum(1 for job in self._jobs.values()
                        if job.device_id == device_id and not job.barge_in)
        if in_flight >= gw.max_queries_in_flight:
            return ErrorCode.BUSY, (f"{in_flight} answers of this device are waiting or being "
                                    "generated")
        if not self._rates.allow(device_id, self._clock.now_s()):
            wait_s = self._rates.retry_after_s(device_id)
            return ErrorCode.RATE_LIMITED, (
                f"more than {gw.device_queries_per_min:g} questions a minute from this "
                f"device; ask again in {wait_s:.1f} s")
        return None

    def _attach(self, link: _Link, key: tuple[str, str], resume_from: int) -> bool:
        """A query already being answered: stream it to ``link`` from ``resume_from`` on
        (a resume), or refuse it when another live session of the device holds it."""
        job = self._jobs.get(key)
        if job is None:
            return False
        holder = job.link
        if holder is not None and holder is not link and holder.session is not link.session \
                and holder in self._links:
            link.conn.send_query_error(key[1], ErrorCode.DUPLICATE_QUERY,
                                       f"query {key[1]} is being answered on another "
                                       "connection of this device")
            return True
        job.link = link
        if resume_from > len(job.text):
            link.conn.send_reset(key[1])
            resume_from = 0
        link.conn.send_delta(key[1], job.text[resume_from:], resume_from)
        return True

    def _on_cancel(self, link: _Link, event: CancelReceived) -> None:
        session = link.session
        assert session is not None
        job = self._jobs.get((session.device_id, event.query_id))
        if job is None or job.task is None or job.ended:
            link.conn.send_done(AnswerDone(query_id=event.query_id, text="", cancelled=True,
                                           heard_chars=event.heard_chars))
            return
        job.barge_in = True
        job.heard_chars = event.heard_chars
        job.link = link
        if job.first_delta_s is None:
            self._rates.refund(job.device_id)  # taken back before any answer: it costs nothing
        job.task.cancel()

    def _stream(self, job: _Job) -> AsyncIterator[str]:
        if job.request.contemplate:
            return contemplate(self.backend, job.request, self.config.contemplate,
                               on_usage=job.set_usage)
        return self.backend.stream(job.request)

    async def _run(self, job: _Job, key: tuple[str, str]) -> None:
        """Wait for the device's turn, generate, then end the query (done or error).

        Barge-in cancels this task: the answer so far is finished as ``cancelled``.
        Any other cancellation (shutdown, a dropped orphan) ends it with nothing kept.
        A task cancelled before it ever ran is ended by ``_job_done``.
        """
        try:
            async with self.scheduler.turn(job.device_id):
                await self._generate(job)
        except asyncio.CancelledError:
            if not job.barge_in:
                raise
            current = asyncio.current_task()
            if current is not None:
                current.uncancel()
        except BackendError as exc:
            self._end_with_error(job, key, exc.code, str(exc))
            return
        except Exception as exc:
            logger.exception("backend %s failed on %s", self.backend.name,
                             _printable(job.request.query_id))
            self._end_with_error(job, key, ErrorCode.BACKEND_FAILED, f"the backend failed: {exc}")
            return
        await self._finish(job, key)

    async def _generate(self, job: _Job) -> None:
        qid = job.request.query_id
        async for delta in self._stream(job):
            if not delta:
                continue
            if job.first_delta_s is None:
                job.first_delta_s = self._clock.now_s()
            offset = len(job.text)
            job.text += delta
            if job.link is not None and job.link.conn.send_delta(qid, delta, offset):
                job.link.wake()

    async def _finish(self, job: _Job, key: tuple[str, str]) -> None:
        """Store the answer, then send its ``answer.done``: the query's one ending."""
        if job.ended:
            return
        job.ended = True
        try:
            usage, estimated = self._usage(job)
            now_s = self._clock.now_s()
            first_s = job.first_delta_s if job.first_delta_s is not None else now_s
            done = AnswerDone(
                query_id=job.request.query_id, text=job.text, prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens, usage_estimated=estimated,
                first_delta_ms=(first_s - job.started_s) * 1000,
                total_ms=(now_s - job.started_s) * 1000,
                cancelled=job.barge_in, heard_chars=job.heard_chars,
            )
            try:
                await self.store.put(job.device_id, done.query_id, done, finished_at_s=time.time())
            except Exception:
                logger.exception("answer store failed; %s is answered but not kept",
                                 _printable(done.query_id))
            if not job.barge_in:
                self.answers_generated += 1
            if job.link is not None and job.link.conn.send_done(done):
                job.link.wake()
        finally:
            self._forget(job, key)

    def _job_done(self, job: _Job, key: tuple[str, str], task: asyncio.Task[None]) -> None:
        """Every job passes here. A barge-in that cancelled the task before it ever ran
        still gets its ``answer.done`` (cancelled): no query is left without an ending."""
        if task.cancelled() and job.barge_in and not job.ended and not self._stopping:
            finishing = asyncio.get_running_loop().create_task(self._finish(job, key))
            self._finishing.add(finishing)
            finishing.add_done_callback(self._finishing.discard)
            return
        self._forget(job, key)

    def _forget(self, job: _Job, key: tuple[str, str]) -> None:
        if self._jobs.get(key) is job:
            del self._jobs[key]
        job.request = dataclasses.replace(job.request, images_jpeg=())  # free the keyframes

    def _usage(self, job: _Job) -> tuple[Usage, bool]:
        usage = job.usage or pop_usage(self.backend, job.request.query_id)
        if usage is not None:
            return usage, False
        return estimate_usage(job.request, job.text), True

    def _end_with_error(self, job: _Job, key: tuple[str, str], code: str, message: str) -> None:
        job.ended = True
        if job.link is not None and job.link.conn.send_query_error(
                job.request.query_id, code, message):
            job.link.wake()
        self._forget(job, key)


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
        ) if not ok
    ]
    if problems:
        raise BadInputError("; ".join(problems))


def _printable(text: str, limit: int = 300) -> str:
    """``text`` safe for one log line: control characters escaped, length capped."""
    clipped = text if len(text) <= limit else text[:limit] + "..."
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in clipped)


def gateway_config_with(config: Config, **changes: Any) -> Config:
    """``config`` with some ``[gateway]`` keys changed (the CLI flags)."""
    kept: Mapping[str, Any] = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(config, gateway=dataclasses.replace(config.gateway, **kept))
