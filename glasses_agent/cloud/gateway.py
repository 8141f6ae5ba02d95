"""The cloud gateway: a websockets server around the sans-I/O protocol core.

One ``ServerConnection`` per websocket; this module moves its messages, checks
device tokens, runs one reasoning job per query and keeps what resuming needs:

- **Sessions** (in memory): a resume handle names a session of one device; a
  reconnect that presents it within ``resume_ttl_s`` continues the session.
- **Jobs** (in memory), keyed by (device id, query id): an answer keeps being
  generated while its edge is away, and a re-sent query attaches to it
  (streaming from the character the edge already has) instead of starting a
  second run.
- **Answers** (``AnswerStore``), keyed by (device id, query id): finished and
  cancelled answers, kept ``answer_ttl_s``. A re-sent query that is already
  answered gets its stored ``answer.done`` (``replayed``) and no new run. The
  store is an object with four async methods so a shared one (Redis) can
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
import hashlib
import logging
import secrets
import sqlite3
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.cloud.contemplate import contemplate
from glasses_agent.cloud.reasoning import (
    BackendError,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    estimate_usage,
    make_backend,
    pop_usage,
)
from glasses_agent.config import Config, GatewayConfig
from glasses_agent.errors import BadInputError
from glasses_agent.protocol import (
    AnswerDone,
    CancelReceived,
    Close,
    CloseCode,
    ErrorReceived,
    HelloReceived,
    Limits,
    ProtocolViolation,
    QueryReceived,
    ServerEvent,
    State,
)
from glasses_agent.protocol import ServerConnection as ProtocolServer

__all__ = [
    "AnswerStore",
    "Gateway",
    "MemoryAnswerStore",
    "SqliteAnswerStore",
    "StoredAnswer",
    "TokenTable",
    "open_answer_store",
    "server_ssl_context",
]

logger = logging.getLogger("glasses_agent.gateway")


# --- device tokens --------------------------------------------------------------------------


class TokenTable:
    """Device tokens -> device ids. An entry is ``"device-id token"`` or a bare
    ``"token"`` (its device id is then ``device-`` and 8 hex digits of its hash)."""

    def __init__(self, entries: Iterable[str]) -> None:
        self._devices: dict[bytes, str] = {}
        for entry in entries:
            parts = entry.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2:
                raise BadInputError(
                    f"token entry {parts[0]!r} ...: expected 'token' or 'device-id token'"
                )
            token = parts[-1]
            digest = hashlib.sha256(token.encode()).digest()
            self._devices[digest] = parts[0] if len(parts) == 2 else f"device-{digest.hex()[:8]}"

    def __len__(self) -> int:
        return len(self._devices)

    def device_for(self, token: str) -> str | None:
        """The device id of ``token``, or None. (A hash lookup: no early-exit compare.)"""
        if not token:
            return None
        return self._devices.get(hashlib.sha256(token.encode()).digest())

    @classmethod
    def from_config(cls, config: GatewayConfig) -> TokenTable:
        entries: list[str] = [e for e in config.tokens.split(",") if e.strip()]
        if config.tokens_file:
            path = Path(config.tokens_file).expanduser()
            try:
                entries += path.read_text().splitlines()
            except OSError as exc:
                raise BadInputError(f"cannot read the tokens file {path}: {exc}") from exc
        table = cls(entries)
        if not len(table):
            raise BadInputError(
                "no device tokens: give --tokens-file PATH (one 'device-id token' per line) "
                "or set GLASSES_AGENT_GATEWAY__TOKENS"
            )
        return table


# --- answered queries -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredAnswer:
    """A finished (or cancelled) answer. ``finished_at_s``: wall-clock epoch seconds,
    so that a persisted store means the same after a restart."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_estimated: bool = False
    cancelled: bool = False
    heard_chars: int = 0
    finished_at_s: float = 0.0


class AnswerStore(Protocol):
    """Answers by (device id, query id). Times are wall-clock epoch seconds."""

    async def get(self, device_id: str, query_id: str, now_s: float) -> StoredAnswer | None: ...

    async def put(self, device_id: str, query_id: str, answer: StoredAnswer) -> None: ...

    async def expire(self, now_s: float) -> int:
        """Forget answers older than the store's time to live; how many were dropped."""
        ...

    async def aclose(self) -> None: ...


class MemoryAnswerStore:
    """In this process only: a restart forgets every answer."""

    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._answers: dict[tuple[str, str], StoredAnswer] = {}

    async def get(self, device_id: str, query_id: str, now_s: float) -> StoredAnswer | None:
        answer = self._answers.get((device_id, query_id))
        if answer is None or now_s - answer.finished_at_s > self.ttl_s:
            return None
        return answer

    async def put(self, device_id: str, query_id: str, answer: StoredAnswer) -> None:
        self._answers[(device_id, query_id)] = answer

    async def expire(self, now_s: float) -> int:
        old = [k for k, a in self._answers.items() if now_s - a.finished_at_s > self.ttl_s]
        for key in old:
            del self._answers[key]
        return len(old)

    async def aclose(self) -> None:
        self._answers.clear()


class SqliteAnswerStore:
    """A SQLite file (WAL): answers survive a restart or a kill of the gateway.

    Writes are small and committed before the ``answer.done`` goes out; with
    ``synchronous=NORMAL`` a commit reaches the OS before we go on, so killing
    the process loses nothing (a power cut may lose the last commits).
    """

    def __init__(self, path: str | Path, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.path = Path(path).expanduser()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (device_id TEXT, query_id TEXT, "
                "text TEXT, prompt_tokens INT, completion_tokens INT, usage_estimated INT, "
                "cancelled INT, heard_chars INT, finished_at_s REAL, "
                "PRIMARY KEY (device_id, query_id))"
            )
        except (OSError, sqlite3.Error) as exc:
            raise BadInputError(f"cannot open the answers database {self.path}: {exc}") from exc

    async def get(self, device_id: str, query_id: str, now_s: float) -> StoredAnswer | None:
        row = self._db.execute(
            "SELECT text, prompt_tokens, completion_tokens, usage_estimated, cancelled, "
            "heard_chars, finished_at_s FROM answers WHERE device_id=? AND query_id=?",
            (device_id, query_id),
        ).fetchone()
        if row is None or now_s - row[6] > self.ttl_s:
            return None
        return StoredAnswer(text=row[0], prompt_tokens=row[1], completion_tokens=row[2],
                            usage_estimated=bool(row[3]), cancelled=bool(row[4]),
                            heard_chars=row[5], finished_at_s=row[6])

    async def put(self, device_id: str, query_id: str, answer: StoredAnswer) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, query_id, answer.text, answer.prompt_tokens, answer.completion_tokens,
             int(answer.usage_estimated), int(answer.cancelled), answer.heard_chars,
             answer.finished_at_s),
        )

    async def expire(self, now_s: float) -> int:
        cursor = self._db.execute("DELETE FROM answers WHERE finished_at_s < ?",
                                  (now_s - self.ttl_s,))
        return cursor.rowcount

    async def aclose(self) -> None:
        self._db.close()


def open_answer_store(config: GatewayConfig) -> AnswerStore:
    """SQLite when ``answers_db`` names a file, else memory."""
    if config.answers_db:
        return SqliteAnswerStore(config.answers_db, ttl_s=config.answer_ttl_s)
    return MemoryAnswerStore(ttl_s=config.answer_ttl_s)


def server_ssl_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """A TLS context from ``tls_cert`` and ``tls_key`` (PEM), or None for plain ws://."""
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise BadInputError("TLS needs both gateway.tls_cert and gateway.tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(Path(config.tls_cert).expanduser(),
                                Path(config.tls_key).expanduser())
    except (OSError, ssl.SSLError) as exc:
        raise BadInputError(f"cannot load the TLS certificate or key: {exc}") from exc
    return context


# --- sessions, connections, jobs ------------------------------------------------------------


@dataclass(slots=True, kw_only=True, eq=False)
class _Session:
    session_id: str
    resume_handle: str
    device_id: str
    link: _Link | None = None
    detached_at_s: float | None = None


class _Link:
    """One websocket and its protocol core; a writer task sends what the core queues."""

    def __init__(self, ws: ServerConnection, conn: ProtocolServer) -> None:
        self.ws = ws
        self.conn = conn
        self.session: _Session | None = None
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run_writer(self) -> None:
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                for item in self.conn.data_to_send():
                    if isinstance(item, Close):
                        await self.ws.close(item.code, item.reason)
                        return
                    await self.ws.send(item)
        except ConnectionClosed:
            return


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
        )
        self._sessions: dict[str, _Session] = {}
        self._jobs: dict[tuple[str, str], _Job] = {}
        self._links: set[_Link] = set()
        self._server: Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._stopping = False
        self._stopped = asyncio.Event()
        self.answers_generated = 0  # backend runs that finished (for tests and logs)

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
        await asyncio.gather(*jobs, return_exceptions=True)
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
            try:
                await self.store.expire(time.time())
            except Exception:  # a store outage must not stop the sweeps
                logger.exception("answer store expiry failed")

    # --- one connection ---------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        link = _Link(ws, ProtocolServer(self.limits, self._clock.now_s()))
        if self._stopping:
            link.conn.going_away(reason="gateway shutting down")
        self._links.add(link)
        writer = asyncio.create_task(link.run_writer())
        ticker = asyncio.create_task(self._tick(link))
        link.wake()
        try:
            async for message in ws:
                now_s = self._clock.now_s()
                if isinstance(message, str):
                    events = link.conn.receive_text(message, now_s)
                else:
                    events = link.conn.receive_bytes(message, now_s)
                for event in events:
                    await self._on_event(link, event)
                link.wake()
        except ConnectionClosed:
            pass
        except Exception:  # a bug here ends this connection only, never the gateway
            logger.exception("connection handler failed")
            link.conn.refuse(code="internal_error", message="internal error",
                             close_code=CloseCode.INTERNAL_ERROR)
            link.wake()
        finally:
            self._links.discard(link)
            ticker.cancel()
            if link.conn.state is State.CLOSING:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(writer), 2.0)
            writer.cancel()
            link.conn.connection_closed()
            self._detach(link)

    async def _tick(self, link: _Link) -> None:
        while link.conn.state in (State.CONNECTING, State.OPEN):
            delay_s = link.conn.next_tick_s - self._clock.now_s()
            await asyncio.sleep(max(0.0, delay_s))
            link.conn.tick(self._clock.now_s())
            link.wake()

    def _detach(self, link: _Link) -> None:
        session = link.session
        if session is not None and session.link is link:
            session.link = None
            session.detached_at_s = self._clock.now_s()
        for job in self._jobs.values():
            if job.link is link:
                job.link = None

    async def _on_event(self, link: _Link, event: ServerEvent) -> None:
        if isinstance(event, HelloReceived):
            self._on_hello(link, event)
        elif isinstance(event, QueryReceived):
            await self._on_query(link, event)
        elif isinstance(event, CancelReceived):
            self._on_cancel(link, event)
        elif isinstance(event, ProtocolViolation):
            logger.info("protocol error from %s: %s (%s)", link.ws.remote_address,
                        event.code, event.message)
        elif isinstance(event, ErrorReceived):
            logger.info("the edge %s reports %s (%s)", link.ws.remote_address,
                        event.error.code, event.error.message)

    def _on_hello(self, link: _Link, event: HelloReceived) -> None:
        device_id = self.tokens.device_for(event.hello.token)
        if device_id is None:
            link.conn.refuse(code="unauthorized", message="missing or wrong device token",
                             close_code=CloseCode.UNAUTHORIZED)
            return
        session = self._sessions.get(event.hello.resume) if event.hello.resume else None
        resumed = session is not None and session.device_id == device_id
        if session is None or not resumed:
            handle = secrets.token_urlsafe(18)
            session = _Session(session_id=f"s-{secrets.token_hex(8)}", resume_handle=handle,
                               device_id=device_id)
            self._sessions[handle] = session
        old = session.link
        if old is not None and old is not link:
            old.conn.refuse(code="session_replaced", message="a newer connection resumed this "
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
            link.conn.send_done(AnswerDone(
                query_id=qid, text=stored.text, prompt_tokens=stored.prompt_tokens,
                completion_tokens=stored.completion_tokens,
                usage_estimated=stored.usage_estimated, replayed=True,
                cancelled=stored.cancelled, heard_chars=stored.heard_chars,
            ))
            return
        if self._attach(link, key, request.resume_from):  # started while we looked
            return
        if self._stopping:
            link.conn.send_query_error(qid, "going_away", "the gateway is shutting down")
            return
        running = sum(1 for job in self._jobs.values() if job.session is session)
        if running >= self.limits.max_queries_in_flight:
            link.conn.send_query_error(
                qid, "busy", f"{running} answers of this session are still being generated")
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

    def _attach(self, link: _Link, key: tuple[str, str], resume_from: int) -> bool:
        job = self._jobs.get(key)
        if job is None:
            return False
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
        if job is None or job.task is None:
            link.conn.send_done(AnswerDone(query_id=event.query_id, text="", cancelled=True,
                                           heard_chars=event.heard_chars))
            return
        job.barge_in = True
        job.heard_chars = event.heard_chars
        job.task.cancel()

    def _stream(self, job: _Job) -> AsyncIterator[str]:
        if job.request.contemplate:
            return contemplate(self.backend, job.request, self.config.contemplate,
                               on_usage=job.set_usage)
        return self.backend.stream(job.request)

    async def _run(self, job: _Job, key: tuple[str, str]) -> None:
        qid = job.request.query_id
        try:
            try:
                async for delta in self._stream(job):
                    if not delta:
                        continue
                    if job.first_delta_s is None:
                        job.first_delta_s = self._clock.now_s()
                    offset = len(job.text)
                    job.text += delta
                    if job.link is not None and job.link.conn.send_delta(qid, delta, offset):
                        job.link.wake()
            except asyncio.CancelledError:
                if not job.barge_in:
                    raise  # shutdown: nothing is stored, the edge re-sends elsewhere
                current = asyncio.current_task()
                if current is not None:
                    current.uncancel()
            except BackendError as exc:
                self._send_error(job, exc.code, str(exc))
                return
            except Exception as exc:
                logger.exception("backend %s failed on %s", self.backend.name, qid)
                self._send_error(job, "backend_failed", f"the backend failed: {exc}")
                return
            usage = self._usage(job)
            answer = StoredAnswer(
                text=job.text, prompt_tokens=usage[0].prompt_tokens,
                completion_tokens=usage[0].completion_tokens, usage_estimated=usage[1],
                cancelled=job.barge_in, heard_chars=job.heard_chars, finished_at_s=time.time(),
            )
            try:
                await self.store.put(job.device_id, qid, answer)
            except Exception:
                logger.exception("answer store failed; %s is answered but not kept", qid)
            if not job.barge_in:
                self.answers_generated += 1
            now_s = self._clock.now_s()
            first_s = job.first_delta_s if job.first_delta_s is not None else now_s
            done = AnswerDone(
                query_id=qid, text=answer.text, prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                usage_estimated=answer.usage_estimated,
                first_delta_ms=(first_s - job.started_s) * 1000,
                total_ms=(now_s - job.started_s) * 1000,
                cancelled=answer.cancelled, heard_chars=answer.heard_chars,
            )
            if job.link is not None and job.link.conn.send_done(done):
                job.link.wake()
        finally:
            if self._jobs.get(key) is job:
                del self._jobs[key]

    def _usage(self, job: _Job) -> tuple[Usage, bool]:
        usage = job.usage or pop_usage(self.backend, job.request.query_id)
        if usage is not None:
            return usage, False
        return estimate_usage(job.request, job.text), True

    def _send_error(self, job: _Job, code: str, message: str) -> None:
        if job.link is not None and job.link.conn.send_query_error(
                job.request.query_id, code, message):
            job.link.wake()


def gateway_config_with(config: Config, **changes: Any) -> Config:
    """``config`` with some ``[gateway]`` keys changed (the CLI flags)."""
    kept: Mapping[str, Any] = {k: v for k, v in changes.items() if v is not None}
    return dataclasses.replace(config, gateway=dataclasses.replace(config.gateway, **kept))
