"""Answers generated on this replica: one task per query, from its turn at the backend to
its one ending (``answer.done`` or an error).

A job is keyed by (device id, query id). It keeps generating while its edge is away;
whichever connection of the session holds it now (``job.link``) gets the text. With
Redis (``shared``), the job holds the query's lease, its text goes to the query's
stream (``StreamWriter``) for a follower on another replica, and its answer is kept
in Redis; without, in the answer store (memory or SQLite).

Barge-in cancels the job's task: the answer so far is finished as ``cancelled``.
Any other cancellation (shutdown, an orphan dropped, the lease lost) ends it with
nothing kept; a shared job then gives its lease up at once, so that a follower
takes the query over without waiting for the lease to run out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import AsyncIterator, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any

from glasses_agent.clock import Clock
from glasses_agent.config import Config
from glasses_agent.gateway.contemplate import contemplate
from glasses_agent.gateway.fairness import FairScheduler
from glasses_agent.gateway.metrics import GatewayMetrics
from glasses_agent.gateway.reasoning import (
    BackendError,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    estimate_usage,
    pop_usage,
)
from glasses_agent.gateway.sessions import Link, Session
from glasses_agent.gateway.shared import SharedState, SharedStateDown, StreamWriter
from glasses_agent.gateway.stores import AnswerStore
from glasses_agent.protocol import AnswerDone, ErrorCode, QueryReceived

__all__ = ["Job", "Jobs", "printable"]

logger = logging.getLogger("glasses_agent.gateway")

Key = tuple[str, str]


@dataclass(slots=True, kw_only=True, eq=False)
class Job:
    device_id: str
    session: Session
    request: ReasoningRequest
    started_s: float
    link: Link | None = None
    text: str = ""
    first_delta_s: float | None = None
    barge_in: bool = False
    heard_chars: int = 0
    usage: Usage | None = None  # contemplating mode: its sub-agents' counts, added up
    task: asyncio.Task[None] | None = None
    # The job's one ending (answer.done or an error) has been decided.
    ended: bool = False
    writer: StreamWriter | None = None  # with Redis: the lease is held, the text streamed

    def set_usage(self, usage: Usage) -> None:
        self.usage = usage

    @property
    def key(self) -> Key:
        return (self.device_id, self.request.query_id)


class Jobs:
    """The answers this replica generates (see the module docstring)."""

    def __init__(self, config: Config, *, backend: ReasoningBackend, store: AnswerStore,
                 scheduler: FairScheduler, clock: Clock, metrics: GatewayMetrics,
                 shared: SharedState | None) -> None:
        self.config = config
        self.backend = backend
        self.store = store
        self.scheduler = scheduler
        self.metrics = metrics
        self.shared = shared
        self._clock = clock
        self._jobs: dict[Key, Job] = {}
        self._finishing: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.answers_generated = 0  # backend runs that finished (for tests and logs)
        self.answers_dropped = 0  # runs dropped: their session went away and did not return
        self.backend_runs = 0  # runs begun (a takeover or a restart begins one more)

    def __len__(self) -> int:
        return len(self._jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self._jobs.values()))

    def get(self, key: Key) -> Job | None:
        return self._jobs.get(key)

    def in_flight(self, device_id: str) -> int:
        """Answers of this device waiting or being generated here (barge-ins excepted)."""
        return sum(1 for job in self._jobs.values()
                   if job.device_id == device_id and not job.barge_in)

    def start(self, link: Link, session: Session, event: QueryReceived, *,
              shared: bool) -> Job:
        """Generate the answer to ``event`` for ``session``; ``shared``: this replica holds
        its lease in Redis (stream the text there)."""
        request = event.request
        job = Job(
            device_id=session.device_id, session=session, link=link,
            started_s=self._clock.now_s(),
            request=ReasoningRequest(
                query_id=request.query_id, text=request.text, facts=request.facts,
                images_jpeg=event.images_jpeg, max_tokens=request.max_tokens,
                contemplate=request.contemplate,
            ),
        )
        if shared and self.shared is not None:
            job.writer = StreamWriter(self.shared, job.device_id, request.query_id,
                                      session.session_id,
                                      on_cancel=functools.partial(self._cancelled_elsewhere, job),
                                      on_lost=functools.partial(self._lost, job))
        self._jobs[job.key] = job
        job.task = asyncio.create_task(self._run(job), name=f"answer {request.query_id}")
        job.task.add_done_callback(functools.partial(self._job_done, job))
        return job

    def barge_in(self, job: Job, link: Link, heard_chars: int) -> None:
        job.barge_in = True
        job.heard_chars = heard_chars
        job.link = link
        if job.task is not None:
            job.task.cancel()

    def drop(self, job: Job) -> None:
        """Nobody will read this answer: stop generating it, keep nothing."""
        if job.ended or job.task is None:
            return
        logger.info("dropping answer %s of a session gone for %g s",
                    printable(job.request.query_id), self.config.gateway.orphan_grace_s)
        self.answers_dropped += 1
        self.metrics.queries.labels("dropped").inc()
        job.task.cancel()

    def leases(self) -> list[tuple[str, str, str]]:
        """(device, query, session) of the jobs whose lease this replica holds."""
        return [(job.device_id, job.request.query_id, job.session.session_id)
                for job in self._jobs.values() if job.writer is not None and not job.ended]

    def lost(self, index: int) -> None:
        """``leases()[index]``: another replica holds its lease now."""
        held = [job for job in self._jobs.values() if job.writer is not None and not job.ended]
        if index < len(held):
            self._lost(held[index])

    async def drain(self, timeout_s: float) -> None:
        """Let the running answers finish (those that start meanwhile too), for up to
        ``timeout_s``."""
        loop = asyncio.get_running_loop()
        deadline_s = loop.time() + timeout_s
        while (tasks := [job.task for job in self._jobs.values() if job.task is not None]):
            left_s = deadline_s - loop.time()
            if left_s <= 0:
                return
            await asyncio.wait(tasks, timeout=left_s)

    async def stop(self) -> None:
        """Cancel every job; shared ones give their leases up."""
        self.stopping = True
        tasks = [job.task for job in self._jobs.values() if job.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.sleep(0)  # the done callbacks run
        await asyncio.gather(*self._finishing, return_exceptions=True)

    # --- one job ----------------------------------------------------------------------------

    def _cancelled_elsewhere(self, job: Job, heard_chars: int) -> None:
        """A barge-in reached another replica (the edge's connection is there now)."""
        if job.ended or job.barge_in or job.task is None:
            return
        job.barge_in = True
        job.heard_chars = heard_chars
        job.task.cancel()

    def _lost(self, job: Job) -> None:
        """Another replica took this query over: stop, end nothing (it ends it there)."""
        if job.ended or job.task is None:
            return
        logger.info("answer %s was taken over by another replica", printable(
            job.request.query_id))
        job.ended = True
        job.task.cancel()

    def _stream(self, job: Job) -> AsyncIterator[str]:
        if job.request.contemplate:
            return contemplate(self.backend, job.request, self.config.contemplate,
                               on_usage=job.set_usage)
        return self.backend.stream(job.request)

    async def _run(self, job: Job) -> None:
        """Wait for the device's turn, generate, then end the query (done or error).
        A task cancelled before it ever ran is ended by ``_job_done``."""
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
            await self._end_with_error(job, exc.code, str(exc))
            return
        except Exception as exc:
            logger.exception("backend %s failed on %s", self.backend.name,
                             printable(job.request.query_id))
            await self._end_with_error(job, ErrorCode.BACKEND_FAILED,
                                       f"the backend failed: {exc}")
            return
        await self._finish(job)

    async def _generate(self, job: Job) -> None:
        qid = job.request.query_id
        self.backend_runs += 1
        self.metrics.backend_runs.inc()
        async for delta in self._stream(job):
            if not delta:
                continue
            if job.first_delta_s is None:
                job.first_delta_s = self._clock.now_s()
                self.metrics.first_delta.observe(job.first_delta_s - job.started_s)
            offset = len(job.text)
            job.text += delta
            if job.writer is not None:
                job.writer.push(offset, delta)
            if job.link is not None and job.link.conn.send_delta(qid, delta, offset):
                job.link.wake()

    async def _finish(self, job: Job) -> None:
        """Keep the answer, then send its ``answer.done``: the query's one ending."""
        if job.ended:
            return
        job.ended = True
        try:
            done = await self._keep(job, self._done(job))
            if not job.barge_in:
                self.answers_generated += 1
                self.metrics.answer_seconds.observe(self._clock.now_s() - job.started_s)
            self.metrics.queries.labels("cancelled" if job.barge_in else "answered").inc()
            if job.link is not None and job.link.conn.send_done(done):
                job.link.wake()
        finally:
            self._forget(job)

    def _done(self, job: Job) -> AnswerDone:
        usage, estimated = self._usage(job)
        now_s = self._clock.now_s()
        first_s = job.first_delta_s if job.first_delta_s is not None else now_s
        return AnswerDone(
            query_id=job.request.query_id, text=job.text, prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens, usage_estimated=estimated,
            first_delta_ms=(first_s - job.started_s) * 1000,
            total_ms=(now_s - job.started_s) * 1000,
            cancelled=job.barge_in, heard_chars=job.heard_chars,
        )

    async def _keep(self, job: Job, done: AnswerDone) -> AnswerDone:
        """Keep ``done`` where a re-sent query will find it; the answer as kept (with
        Redis, the first one kept wins)."""
        qid = done.query_id
        if job.writer is not None and self.shared is not None:
            job.writer.close()  # the stream's end holds all of the text
            try:
                return await self.shared.call(self.shared.state.finish, job.device_id, qid,
                                              job.session.session_id, done)
            except SharedStateDown:
                self.shared.keep(job.device_id, qid, done)
        elif self.shared is not None:
            self.shared.keep(job.device_id, qid, done)
        try:
            await self.store.put(job.device_id, qid, done, finished_at_s=time.time())
        except Exception:
            logger.exception("answer store failed; %s is answered but not kept", printable(qid))
        return done

    async def _end_with_error(self, job: Job, code: str, message: str) -> None:
        job.ended = True
        self.metrics.queries.labels("failed").inc()
        if job.link is not None and job.link.conn.send_query_error(
                job.request.query_id, code, message):
            job.link.wake()
        if job.writer is not None and self.shared is not None:
            job.writer.close()
            try:
                await self.shared.call(self.shared.state.end, job.device_id,
                                       job.request.query_id, job.session.session_id,
                                       code=code, message=message)
            except SharedStateDown:
                pass
        self._forget(job)

    def _job_done(self, job: Job, task: asyncio.Task[None]) -> None:
        """Every job passes here. A barge-in that cancelled the task before it ever ran
        still gets its ``answer.done`` (cancelled): no query is left without an ending.
        A shared job that ended without an ending gives its lease up."""
        if task.cancelled() and job.barge_in and not job.ended and not self.stopping:
            self._spawn(self._finish(job))
            return
        if not job.ended and job.writer is not None:
            self._spawn(self._give_up(job))
        self._forget(job)

    async def _give_up(self, job: Job) -> None:
        if job.writer is None or self.shared is None:
            return
        job.writer.close()
        try:
            await self.shared.call(self.shared.state.end, job.device_id, job.request.query_id,
                                   job.session.session_id)
        except SharedStateDown:
            pass

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    def _forget(self, job: Job) -> None:
        if self._jobs.get(job.key) is job:
            del self._jobs[job.key]
        job.request = dataclasses.replace(job.request, images_jpeg=())  # free the keyframes

    def _usage(self, job: Job) -> tuple[Usage, bool]:
        usage = job.usage or pop_usage(self.backend, job.request.query_id)
        if usage is not None:
            return usage, False
        return estimate_usage(job.request, job.text), True


def printable(text: str, limit: int = 300) -> str:
    """``text`` safe for one log line: control characters escaped, length capped."""
    clipped = text if len(text) <= limit else text[:limit] + "..."
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in clipped)
