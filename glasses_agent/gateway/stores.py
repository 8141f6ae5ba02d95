"""Answered queries, kept so that a re-sent query id is answered once.

A store maps (device id, query id) to the query's ``AnswerDone`` (the wire
record itself: one answer record, from the wire to the store and back) and the
wall-clock time it was finished, kept ``ttl_s``. Times are wall-clock epoch
seconds, so that a persisted store means the same after a restart.

- ``MemoryAnswerStore``: this process only; a restart forgets every answer.
- ``SqliteAnswerStore`` (``[gateway] answers_db``): a SQLite file in WAL mode.
  Every call runs on the store's own thread, so a slow disk never blocks the
  event loop (and with it every other connection).
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from glasses_agent.config import GatewayConfig
from glasses_agent.errors import BadInputError
from glasses_agent.protocol import AnswerDone, ProtocolError

__all__ = ["AnswerStore", "MemoryAnswerStore", "SqliteAnswerStore", "open_answer_store"]

T = TypeVar("T")


class AnswerStore(Protocol):
    """Answers by (device id, query id). Times are wall-clock epoch seconds."""

    async def get(self, device_id: str, query_id: str, now_s: float) -> AnswerDone | None:
        """The answer, if kept and not older than the store's time to live."""
        ...

    async def put(self, device_id: str, query_id: str, answer: AnswerDone, *,
                  finished_at_s: float) -> None: ...

    async def expire(self, now_s: float) -> int:
        """Forget answers older than the store's time to live; how many were dropped."""
        ...

    async def aclose(self) -> None: ...


class MemoryAnswerStore:
    """In this process only: a restart forgets every answer."""

    def __init__(self, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._answers: dict[tuple[str, str], tuple[AnswerDone, float]] = {}

    def __len__(self) -> int:
        return len(self._answers)

    async def get(self, device_id: str, query_id: str, now_s: float) -> AnswerDone | None:
        kept = self._answers.get((device_id, query_id))
        if kept is None or now_s - kept[1] > self.ttl_s:
            return None
        return kept[0]

    async def put(self, device_id: str, query_id: str, answer: AnswerDone, *,
                  finished_at_s: float) -> None:
        self._answers[(device_id, query_id)] = (answer, finished_at_s)

    async def expire(self, now_s: float) -> int:
        old = [k for k, (_, at_s) in self._answers.items() if now_s - at_s > self.ttl_s]
        for key in old:
            del self._answers[key]
        return len(old)

    async def aclose(self) -> None:
        self._answers.clear()


class SqliteAnswerStore:
    """A SQLite file (WAL): answers survive a restart or a kill of the gateway.

    Writes are small and committed before the ``answer.done`` goes out; with
    ``synchronous=NORMAL`` a commit reaches the OS before we go on, so killing
    the process loses nothing (a power cut may lose the last commits). The
    connection lives on one worker thread; the event loop only awaits it.
    """

    _SCHEMA = ("CREATE TABLE IF NOT EXISTS answers_v2 (device_id TEXT NOT NULL, "
               "query_id TEXT NOT NULL, done TEXT NOT NULL, finished_at_s REAL NOT NULL, "
               "PRIMARY KEY (device_id, query_id))")

    def __init__(self, path: str | Path, *, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.path = Path(path).expanduser()
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="answers-db")
        self._db: sqlite3.Connection | None = None
        try:
            self._thread.submit(self._open).result()
        except (OSError, sqlite3.Error) as exc:
            self._thread.shutdown(wait=False)
            raise BadInputError(f"cannot open the answers database {self.path}: {exc} "
                                "(give another --answers-db path, or move the file away)"
                                ) from exc

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(self._SCHEMA)
        self._db = db

    async def _call(self, query: str, args: tuple[Any, ...]) -> sqlite3.Cursor:
        def run() -> sqlite3.Cursor:
            assert self._db is not None
            return self._db.execute(query, args)
        return await asyncio.get_running_loop().run_in_executor(self._thread, run)

    async def get(self, device_id: str, query_id: str, now_s: float) -> AnswerDone | None:
        def run() -> tuple[str, float] | None:
            assert self._db is not None
            row: tuple[str, float] | None = self._db.execute(
                "SELECT done, finished_at_s FROM answers_v2 WHERE device_id=? AND query_id=?",
                (device_id, query_id)).fetchone()
            return row
        row = await asyncio.get_running_loop().run_in_executor(self._thread, run)
        if row is None or now_s - row[1] > self.ttl_s:
            return None
        try:
            return AnswerDone.from_fields(json.loads(row[0]))
        except (ValueError, ProtocolError):
            return None  # a damaged row answers nothing; the query is generated again

    async def put(self, device_id: str, query_id: str, answer: AnswerDone, *,
                  finished_at_s: float) -> None:
        done = json.dumps(answer.fields(), ensure_ascii=False, separators=(",", ":"))
        await self._call("INSERT OR REPLACE INTO answers_v2 VALUES (?, ?, ?, ?)",
                         (device_id, query_id, done, finished_at_s))

    async def expire(self, now_s: float) -> int:
        cursor = await self._call("DELETE FROM answers_v2 WHERE finished_at_s < ?",
                                  (now_s - self.ttl_s,))
        return cursor.rowcount

    async def aclose(self) -> None:
        def close() -> None:
            if self._db is not None:
                self._db.close()
                self._db = None
        await asyncio.get_running_loop().run_in_executor(self._thread, close)
        self._thread.shutdown(wait=False)


def open_answer_store(config: GatewayConfig) -> AnswerStore:
    """SQLite when ``answers_db`` names a file, else memory."""
    if config.answers_db:
        return SqliteAnswerStore(config.answers_db, ttl_s=config.answer_ttl_s)
    return MemoryAnswerStore(ttl_s=config.answer_ttl_s)
