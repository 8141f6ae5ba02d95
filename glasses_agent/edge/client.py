"""The edge's client of the cloud gateway: an asyncio websockets adapter around
``glasses_agent.protocol.ClientConnection``.

    async with EdgeClient(config.cloud) as client:       # token from [cloud]
        reply = client.ask(query)                         # a frames.Query (or text)
        async for delta in reply:                         # text deltas, to speak
            ...
        answer = reply.answer                             # AnswerDone: text, usage, timing

- It connects, authenticates, and reconnects with exponential backoff and
  jitter (``reconnect_initial_s`` doubling up to ``reconnect_max_s``, each
  delay drawn in [50 %, 100 %]). After a reconnect it resumes the session and
  re-sends every unanswered query; the gateway answers each query id once.
- Several gateways (``[cloud] urls``, replicas sharing their state in Redis):
  it starts at a random one (the glasses spread over the replicas) and moves to
  the next after ``going_away``, a refused connection, a failed handshake or a
  timeout; a link that just dropped is tried again where it was first. The
  backoff grows once every URL has failed in a row.
- The link state (``LinkState``: connected, reconnecting, offline) goes to the
  ``on_state`` callback and to ``states()``; ``state`` is the current one.
  ``reconnecting``: the link just dropped (or the first connection is being
  made); ``offline``: an attempt to connect failed, or the gateway refused us.
- If no new text arrives for ``answer_timeout_s`` (from the ask, then between
  deltas), iterating raises ``CloudTimeoutError`` and the query is cancelled:
  the router then gives the best on-device answer and says it is offline.
- ``reply.cancel(heard_chars)`` is barge-in: the gateway stops generating and
  records how much was heard. A query re-sent after a reconnect may be
  restarted by the gateway (it lost the earlier run); the reply then continues
  after the characters already yielded, and ``answer.restarts`` counts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import random
import secrets
import ssl
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Literal

from websockets.asyncio.client import ClientConnection as WebSocket
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from glasses_agent import __version__
from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.config import CloudConfig
from glasses_agent.edge.router import facts_from_perception
from glasses_agent.errors import BadInputError, GlassesError
from glasses_agent.frames import LinkState, Query
from glasses_agent.protocol import (
    NO_RETRY,
    AnswerDone,
    AnswerFinished,
    AnswerRestarted,
    ClientConnection,
    ClientEvent,
    CloseCode,
    DeltaReceived,
    ErrorCode,
    ErrorReceived,
    Facts,
    GoingAwayReceived,
    Limits,
    ProtocolViolation,
    QueryFailed,
    QueryRequest,
    SessionOpened,
)
from glasses_agent.transport import Transport

__all__ = [
    "CloudError",
    "CloudRefusedError",
    "CloudTimeoutError",
    "EdgeClient",
    "LinkState",
    "Reply",
    "backoff_delay_s",
    "read_token",
]

logger = logging.getLogger("glasses_agent.edge.client")


class CloudError(GlassesError):
    """The cloud did not answer this query; ``code`` says why (the gateway's error code,
    or ``timeout``, ``unauthorized``, ``closed``)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


class CloudTimeoutError(CloudError):
    """No answer within ``answer_timeout_s``: answer on the device, say it is offline."""


class CloudRefusedError(CloudError):
    """The gateway refused this device (wrong token, unsupported protocol): not retried."""

    exit_code = 2


def read_token(config: CloudConfig) -> str:
    """The device token: ``[cloud] token``, else the file ``[cloud] token_file``."""
    if config.token.strip():
        return config.token.strip()
    if config.token_file:
        path = Path(config.token_file).expanduser()
        try:
            token = path.read_text().strip()
        except FileNotFoundError:
            token = ""
        except OSError as exc:
            raise BadInputError(f"cannot read the device token file {path}: {exc}") from exc
        if token:
            return token
    raise BadInputError(
        f"no device token: write it to {config.token_file or 'a file named by cloud.token_file'} "
        "or set GLASSES_AGENT_CLOUD__TOKEN"
    )


def backoff_delay_s(attempt: int, *, initial_s: float, max_s: float, rng: random.Random) -> float:
    """Delay before reconnect ``attempt`` (1, 2, ...): doubling, capped, jittered 50-100 %."""
    base: float = min(max_s, initial_s * 2.0 ** min(attempt - 1, 30))
    return base * rng.uniform(0.5, 1.0)


_END = object()
_RESTART = object()


class Reply:
    """The answer to one ``ask``: iterate for the text deltas; afterwards ``answer`` is the
    gateway's ``answer.done`` (text, usage, timing, replayed, cancelled), ``round_trip_ms``
    the time from ``ask`` to it (measured here) and ``restarts`` how often the gateway
    started the answer again."""

    def __init__(self, client: EdgeClient, query_id: str, timeout_s: float, start_s: float) -> None:
        self.query_id = query_id
        self.answer: AnswerDone | None = None
        self.round_trip_ms = 0.0
        self.restarts = 0
        self._client = client
        self._timeout_s = timeout_s
        self._start_s = start_s
        self._items: asyncio.Queue[object] = asyncio.Queue()
        self._yielded = 0
        self._skip = 0
        self._error: CloudError | None = None
        self._over = False

    def __aiter__(self) -> AsyncIterator[str]:
        return self._deltas()

    async def _deltas(self) -> AsyncIterator[str]:
        while True:
            if self._over and self._items.empty():
                break
            try:
                item = await asyncio.wait_for(self._items.get(), self._timeout_s)
            except TimeoutError:
                self._client._give_up(self.query_id)
                self._finish_error(CloudTimeoutError(
                    f"no answer from the cloud within {self._timeout_s:g} s "
                    f"(link {self._client.state.value})", code="timeout"))
                continue
            if isinstance(item, str):
                if self._skip:
                    cut = min(self._skip, len(item))
                    self._skip -= cut
                    item = item[cut:]
                if item:
                    self._yielded += len(item)
                    yield item
            elif item is _RESTART:
                # The consumer has ``_yielded`` characters (spoken, perhaps): go on after them.
                self._skip = self._yielded
            elif item is _END:
                break
        if self._error is not None:
            raise self._error

    async def result(self) -> AnswerDone:
        """Wait for the whole answer (the deltas are not returned)."""
        async for _ in self:
            pass
        assert self.answer is not None
        return self.answer

    def cancel(self, heard_chars: int = 0) -> None:
        """Barge-in: stop the answer; ``heard_chars`` of it were spoken."""
        if self._over:
            return
        self._client._give_up(self.query_id, heard_chars)
        self._finish_error(CloudError("cancelled", code="cancelled"))

    # called by the client

    def _delta(self, text: str) -> None:
        if not self._over:
            self._items.put_nowait(text)

    def _restart(self) -> None:
        if not self._over:
            self.restarts += 1
            self._items.put_nowait(_RESTART)

    def _finish(self, done: AnswerFinished, now_s: float) -> None:
        if self._over:
            raise RuntimeError(f"query {self.query_id} answered twice")
        self.answer = done.done
        self.round_trip_ms = (now_s - self._start_s) * 1000
        self._over = True
        self._items.put_nowait(_END)
        self._client._replies.pop(self.query_id, None)

    def _finish_error(self, error: CloudError) -> None:
        if self._over:
            return
        self._error = error
        self._over = True
        self._items.put_nowait(_END)
        self._client._replies.pop(self.query_id, None)


class EdgeClient:
    """The glasses' link to the gateway (see the module docstring)."""

    def __init__(
        self,
        config: CloudConfig,
        *,
        token: str | None = None,
        on_state: Callable[[LinkState], None] | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_wire: Callable[[Literal["sent", "received"], str | bytes, float], None] | None = None,
    ) -> None:
        self.config = config
        # Told of every websocket message, both ways (a field-log recorder; it strips tokens).
        self.on_wire = on_wire
        self.token = token if token is not None else read_token(config)
        self.urls: tuple[str, ...] = config.urls or (config.url,)
        self._on_state = on_state
        self._clock = clock or MonotonicClock()
        self._rng = rng or random.Random()
        self._url_index = self._rng.randrange(len(self.urls))
        self._ssl = ssl_context
        if self._ssl is None and any(url.startswith("wss://") for url in self.urls):
            self._ssl = ssl.create_default_context(cafile=config.ca_file or None)
        self._core = ClientConnection(
            token=self.token, client_name=f"glasses-agent/{__version__}",
            limits=Limits(heartbeat_s=config.heartbeat_s,
                          handshake_timeout_s=config.connect_timeout_s),
        )
        self._state = LinkState.RECONNECTING
        self._state_changed = asyncio.Event()
        self._state_log: list[LinkState] = [self._state]
        self._replies: dict[str, Reply] = {}
        self._ws: WebSocket | None = None
        self._transport: Transport[ClientEvent] | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closing = False
        self._refused: CloudRefusedError | None = None
        self._fatal_error = ""
        self._going_away_s: float | None = None
        self._ids = itertools.count(1)
        # Query ids must be unique per device (the gateway dedupes on them), across
        # restarts and across several clients with one token: a random prefix each.
        self._id_prefix = secrets.token_hex(6)
        self.sessions_opened = 0
        self.sessions_resumed = 0  # of those, sessions the gateway continued (resumed: true)
        self.last_close: tuple[int, str] | None = None  # (code, reason) of the last transport
        self._timed_out_here = False  # this side closed the last transport: the gateway was silent

    @property
    def url(self) -> str:
        """The gateway this client connects to now (one of ``urls``)."""
        return self.urls[self._url_index]

    def _next_url(self) -> None:
        self._url_index = (self._url_index + 1) % len(self.urls)

    # --- lifecycle --------------------------------------------------------------------------

    async def __aenter__(self) -> EdgeClient:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self, *, wait: bool = True) -> None:
        """Start connecting. With ``wait``, return after the first attempt (connected or
        not: the glasses work offline); raise ``CloudRefusedError`` if refused."""
        if self._runner is None:
            self._runner = asyncio.create_task(self._run(), name="edge-client")
        if wait:
            with contextlib.suppress(TimeoutError):
                await self.wait_for_state(LinkState.CONNECTED, LinkState.OFFLINE,
                                          timeout_s=self.config.connect_timeout_s * 2 + 1)
            if self._refused is not None:
                raise self._refused

    async def aclose(self) -> None:
        self._closing = True
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._ws.close(CloseCode.NORMAL, "bye"), 2.0)
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        for reply in list(self._replies.values()):
            reply._finish_error(CloudError("the cloud client is closed", code="closed"))
        self._set_state(LinkState.OFFLINE)
        self._changed()

    # --- state ------------------------------------------------------------------------------

    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def state_history(self) -> tuple[LinkState, ...]:
        """Every state so far, in order (for logs and tests)."""
        return tuple(self._state_log)

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        self._state = state
        self._state_log.append(state)
        logger.info("cloud link: %s", state.value)
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                logger.exception("on_state callback failed")
        self._changed()

    def _changed(self) -> None:
        self._state_changed.set()
        self._state_changed = asyncio.Event()

    async def wait_for_state(self, *states: LinkState, timeout_s: float) -> LinkState:
        """Wait until the state is one of ``states``; ``TimeoutError`` after ``timeout_s``."""
        async def wait() -> LinkState:
            while self._state not in states and self._refused is None:
                await self._state_changed.wait()
            return self._state
        return await asyncio.wait_for(wait(), timeout_s)

    async def states(self) -> AsyncIterator[LinkState]:
        """The current state, then each change (until the client is closed)."""
        seen = len(self._state_log) - 1
        while True:
            while seen < len(self._state_log):
                yield self._state_log[seen]
                seen += 1
            if self._closing:
                return
            await self._state_changed.wait()

    # --- asking -----------------------------------------------------------------------------

    def ask(
        self,
        query: Query | str,
        *,
        facts: Facts | None = None,
        location: tuple[float, float] | None = None,
        max_tokens: int = 128,
        query_id: str | None = None,
        images_jpeg: Sequence[bytes] | None = None,
        contemplate: bool | None = None,
        timeout_s: float | None = None,
    ) -> Reply:
        """Send a query; iterate the returned ``Reply`` for the answer's text.

        ``query``: a ``frames.Query`` (its perception becomes the facts, through the
        router's ``facts_from_perception``; its keyframes are sent, at most two) or
        plain text. ``facts``, ``images_jpeg`` and ``contemplate`` replace what the
        query carries (the router's ``Decision.facts`` and keyframe, say);
        ``location`` is added when given (the wearer allows it). ``timeout_s``
        overrides ``[cloud] answer_timeout_s``.
        """
        if self._refused is not None:
            raise self._refused
        if isinstance(query, Query):
            text, images, wants = query.text, query.keyframes_jpeg, query.contemplate
            qid = query_id or query.query_id
            perception = query.perception
        else:
            text, images, wants, perception = query, (), False, None
            qid = query_id or f"q-{self._id_prefix}-{next(self._ids)}"
        if images_jpeg is not None:
            images = tuple(images_jpeg)
        if contemplate is None:
            contemplate = wants
        built = facts_from_perception(perception, now=datetime.now().astimezone(),
                                      location=location)
        if facts is None:
            facts = built
        elif location is not None:
            facts = dataclasses.replace(facts, location=built.location)
        request = QueryRequest(query_id=qid, text=text, facts=facts,
                               contemplate=contemplate, max_tokens=max_tokens)
        self._core.ask(request, images)
        reply = Reply(self, qid, self.config.answer_timeout_s if timeout_s is None else timeout_s,
                      self._clock.now_s())
        self._replies[qid] = reply
        self._wake()
        return reply

    def _give_up(self, query_id: str, heard_chars: int = 0) -> None:
        self._core.cancel(query_id, heard_chars)
        self._wake()

    def _wake(self) -> None:
        if self._transport is not None:
            self._transport.wake()

    # --- the connection loop ----------------------------------------------------------------

    async def _run(self) -> None:
        attempt = 0  # attempts in a row that opened no session
        while not self._closing:
            try:
                ws = await connect(
                    self.url, ssl=self._ssl, open_timeout=self.config.connect_timeout_s,
                    max_size=self._core.limits.max_message_bytes, compression=None,
                    ping_interval=None, close_timeout=1.0, proxy=None,
                    user_agent_header=f"glasses-agent/{__version__}",
                )
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                logger.info("cannot reach %s: %s", self.url, exc)
                self._set_state(LinkState.OFFLINE)
                attempt += 1
                self._next_url()
            except Exception:  # never let a surprise end the reconnect loop
                logger.exception("connecting to %s failed", self.url)
                self._set_state(LinkState.OFFLINE)
                attempt += 1
                self._next_url()
            else:
                try:
                    opened = await self._session(ws)
                except Exception:
                    logger.exception("the cloud link failed")
                    opened = False
                    await ws.close(CloseCode.INTERNAL_ERROR)
                    self._core.connection_lost(CloseCode.INTERNAL_ERROR, "client error")
                if self._refused is not None or self._closing:
                    return
                if opened:
                    attempt = 0
                self._set_state(LinkState.RECONNECTING)
                attempt += 1
                if self._going_away_s is not None or self._timed_out():
                    self._next_url()
            await asyncio.sleep(self._reconnect_delay_s(attempt))

    def _timed_out(self) -> bool:
        """The last link ended on a timeout (silence, a stalled write): try another gateway."""
        received = self.last_close is not None and self.last_close[0] == CloseCode.HEARTBEAT_TIMEOUT
        return received or self._timed_out_here

    def _reconnect_delay_s(self, attempt: int) -> float:
        """After ``going_away``: the delay it asked for. Else the backoff, which grows once
        every URL has failed (``attempt`` counts the attempts in a row)."""
        if self._going_away_s is not None:
            delay_s = self._going_away_s * self._rng.uniform(1.0, 1.5)
            self._going_away_s = None
            return delay_s
        rounds = (attempt - 1) // len(self.urls)
        return backoff_delay_s(rounds + 1, initial_s=self.config.reconnect_initial_s,
                               max_s=self.config.reconnect_max_s, rng=self._rng)

    async def _session(self, ws: WebSocket) -> bool:
        """Run one transport until it closes; True if a session was opened on it."""
        self._ws = ws
        self._core.start(self._clock.now_s())
        opened_before = self.sessions_opened
        self._transport = Transport(ws, self._core, self._clock,
                                    on_message=self._on_message if self.on_wire else None)

        async def on_event(event: ClientEvent) -> None:
            self._dispatch(event)

        try:
            await self._transport.run(on_event)
        finally:
            self._ws = None
            self._transport = None
        code = ws.close_code if ws.close_code is not None else CloseCode.INTERNAL_ERROR
        reason = ws.close_reason or ""
        self.last_close = (code, reason)
        sent = ws.protocol.close_sent
        self._timed_out_here = sent is not None and sent.code == CloseCode.HEARTBEAT_TIMEOUT
        for event in self._core.connection_lost(code, reason):
            self._dispatch(event)
        if code in NO_RETRY:
            self._refuse(code, reason)
        return self.sessions_opened > opened_before

    def _on_message(self, direction: str, data: str | bytes, now_s: float) -> None:
        if self.on_wire is not None:
            try:
                self.on_wire("sent" if direction == "sent" else "received", data, now_s)
            except Exception:  # a recorder must not cut the link
                logger.exception("the wire tap failed")

    def _refuse(self, code: int, reason: str) -> None:
        why = self._fatal_error or reason or f"close code {code}"
        kind = (ErrorCode.UNAUTHORIZED if code == CloseCode.UNAUTHORIZED
                else ErrorCode.UNSUPPORTED_VERSION)
        self._refused = CloudRefusedError(f"the gateway refused this device: {why}", code=kind)
        for reply in list(self._replies.values()):
            reply._finish_error(self._refused)
        self._core.fail_all(kind, why)
        self._set_state(LinkState.OFFLINE)

    def _dispatch(self, event: ClientEvent) -> None:
        if isinstance(event, SessionOpened):
            self.sessions_opened += 1
            self.sessions_resumed += event.started.resumed
            self._fatal_error = ""
            self._set_state(LinkState.CONNECTED)
            return
        if isinstance(event, ErrorReceived):
            if event.error.fatal:
                self._fatal_error = f"{event.error.code}: {event.error.message}"
            logger.info("gateway error %s: %s", event.error.code, event.error.message)
            return
        if isinstance(event, GoingAwayReceived):
            self._going_away_s = event.going_away.reconnect_after_s
            return
        if isinstance(event, ProtocolViolation):
            logger.warning("bad message from the gateway: %s (%s)", event.code, event.message)
            return
        reply = self._replies.get(getattr(event, "query_id", "") or "")
        if isinstance(event, AnswerFinished):
            reply = self._replies.get(event.done.query_id)
            if reply is not None:
                reply._finish(event, self._clock.now_s())
        elif reply is None:
            return
        elif isinstance(event, DeltaReceived):
            reply._delta(event.text)
        elif isinstance(event, AnswerRestarted):
            reply._restart()
        elif isinstance(event, QueryFailed):
            reply._finish_error(CloudError(f"the gateway could not answer: {event.message}",
                                           code=event.code))
