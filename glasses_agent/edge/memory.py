"""The wearer's notes, kept on the glasses: "remember where I parked", and days later
"where did I park?", answered on the device with no network.

``MemoryStore`` keeps the router's ``Note`` records (``Decision.note``) in one SQLite
file: the words, the time with its UTC offset, what the camera read and recognised
then (the note's ``Facts``, stored as their wire JSON), the location only when the
wearer allows it (``[memory] keep_location``), and, unless ``keep_keyframes`` is off,
the keyframe JPEG. The store keeps the bytes it is given: blurring bystanders' faces
is the caller's job, done before (the router's keyframes already are), and in privacy
mode the caller passes no keyframe (the router keeps no camera facts then).
``[n.note for n in store.notes()]`` is what ``DeviceStatus.notes`` takes (oldest first).

- Durable: WAL, one transaction per note, ``synchronous=FULL``. A note the wearer was
  told "Okay, I'll remember" about must outlive a battery that dies the next second,
  not only a killed process (NORMAL would survive the kill, not the power cut); notes
  are a few a day, so the fsync per commit costs nothing that matters. A process
  killed in the middle of a write leaves the last committed note and nothing half
  written (SQLite ignores WAL frames of an unfinished transaction).
- Never silent loss: a file that is not SQLite or fails ``PRAGMA quick_check`` is a
  ``BadInputError`` naming it, and a copy of its bytes is kept beside it
  (``memory.sqlite.corrupt-20261204-153000``, and ``...-wal`` for its log); the file
  itself is never deleted nor written over. A file from a newer schema, or a SQLite
  file that is not a glasses-agent memory, is refused without being touched.
- Forgetting forgets: deleted notes are overwritten with zeros (``secure_delete``) and
  the log is checkpointed and truncated, so their words and JPEG leave the disk (when
  no other process is reading the file at that moment, the log is cleared later).

Calls may come from any thread (one lock, one connection); several processes may
open the same file (a busy file is waited for up to ``busy_timeout_s``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import filecmp
import itertools
import json
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

from glasses_agent.config import MemoryConfig
from glasses_agent.edge.router.decision import Note
from glasses_agent.errors import BadInputError
from glasses_agent.protocol import Facts, ProtocolError

__all__ = [
    "SCHEMA_VERSION",
    "MemoryStore",
    "StoredNote",
    "default_memory_path",
    "memory_path",
    "open_memory",
]

SCHEMA_VERSION: Final = 1
# PRAGMA application_id of a glasses-agent memory file ("GAM1"), so that another SQLite
# file given as memory.path is refused rather than written into.
APPLICATION_ID: Final = 0x47414D31
_SQLITE_HEADER: Final = b"SQLite format 3\x00"
_JPEG_START: Final = b"\xff\xd8\xff"
_SQLITE_CORRUPT: Final = 11
_SQLITE_NOTADB: Final = 26
_SCHEMA: Final = """CREATE TABLE IF NOT EXISTS notes (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- never reused: a forgotten id stays forgotten
    text TEXT NOT NULL,
    time TEXT NOT NULL,                    -- ISO 8601 with its UTC offset
    lat REAL,                              -- lat, lon: only when the wearer allows it
    lon REAL,
    facts TEXT NOT NULL,                   -- Facts.to_wire() as JSON
    keyframe BLOB                          -- JPEG, faces blurred by the caller
)"""
_COLUMNS: Final = "id, text, time, lat, lon, facts, coalesce(length(keyframe), 0)"


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredNote:
    """A kept note: its id (for ``get``, ``keyframe``, ``forget``) and the ``Note``."""

    id: int
    note: Note
    # Size of the kept keyframe JPEG, bytes; 0 = none kept.
    keyframe_bytes: int = 0

    @property
    def has_keyframe(self) -> bool:
        return self.keyframe_bytes > 0


def default_memory_path(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME/glasses-agent/memory.sqlite``, else under ``~/.local/share``."""
    environ = os.environ if environ is None else environ
    data_home = environ.get("XDG_DATA_HOME", "")
    # The XDG spec: a relative path is invalid and ignored.
    base = Path(data_home) if os.path.isabs(data_home) else Path("~/.local/share").expanduser()
    return base / "glasses-agent" / "memory.sqlite"


def memory_path(config: MemoryConfig, environ: Mapping[str, str] | None = None) -> Path:
    """The file ``config.path`` names (``~`` expanded), or the default one when empty."""
    return Path(config.path).expanduser() if config.path else default_memory_path(environ)


def open_memory(config: MemoryConfig, environ: Mapping[str, str] | None = None) -> MemoryStore:
    """The store the ``[memory]`` section describes."""
    return MemoryStore(memory_path(config, environ), keep_keyframes=config.keep_keyframes,
                       keep_location=config.keep_location)


class MemoryStore:
    """Notes in a SQLite file, opened (or created, with its folder) at construction.

    ``keep_keyframes``: off, ``add`` drops the JPEG. ``keep_location``: off (the
    default), ``add`` drops the note's location (and its facts' location), whatever
    the caller passed. Opening raises ``BadInputError`` for a damaged file (keeping a
    copy), a newer schema, someone else's database, or a path that cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], *, keep_keyframes: bool = True,
                 keep_location: bool = False, busy_timeout_s: float = 5.0) -> None:
        self.path = Path(path).expanduser()
        self.keep_keyframes = keep_keyframes
        self.keep_location = keep_location
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BadInputError(
                f"cannot create the folder {self.path.parent} for the memory database: "
                f"{exc.strerror or exc} (set memory.path to a writable place)") from exc
        if self.path.exists():
            _check_existing(self.path)
        self._db: sqlite3.Connection | None = self._open(busy_timeout_s)

    # --- the API ----------------------------------------------------------------------

    def add(self, note: Note, *, keyframe_jpeg: bytes | None = None) -> int:
        """Keep ``note`` (and its keyframe, faces already blurred) in one transaction;
        its id. ``ValueError`` for a timestamp without a time zone or bytes not a JPEG."""
        if note.timestamp.utcoffset() is None:
            raise ValueError("a note's timestamp must carry its time zone")
        if keyframe_jpeg is not None and not keyframe_jpeg.startswith(_JPEG_START):
            raise ValueError("keyframe_jpeg is not a JPEG")
        facts = note.facts
        location = note.location
        if not self.keep_location:
            facts, location = dataclasses.replace(facts, location=None), None
        row = (note.text, note.timestamp.isoformat(),
               None if location is None else location[0],
               None if location is None else location[1],
               json.dumps(facts.to_wire(), ensure_ascii=False, separators=(",", ":")),
               keyframe_jpeg if self.keep_keyframes and keyframe_jpeg else None)
        with self._transaction("keep a note", write=True) as db:
            cursor = db.execute(
                "INSERT INTO notes (text, time, lat, lon, facts, keyframe) "
                "VALUES (?, ?, ?, ?, ?, ?)", row)
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    def notes(self) -> list[StoredNote]:
        """Every kept note, oldest first (the order they were kept in)."""
        with self._transaction("read the notes") as db:
            rows = db.execute(f"SELECT {_COLUMNS} FROM notes ORDER BY id").fetchall()
        return [self._stored(row) for row in rows]

    def get(self, note_id: int) -> StoredNote | None:
        """The note ``note_id``, or None when there is none (never kept, or forgotten)."""
        with self._transaction("read a note") as db:
            row = db.execute(f"SELECT {_COLUMNS} FROM notes WHERE id = ?",
                             (note_id,)).fetchone()
        return None if row is None else self._stored(row)

    def keyframe(self, note_id: int) -> bytes | None:
        """The JPEG kept with note ``note_id``; None when none is (or no such note)."""
        with self._transaction("read a keyframe") as db:
            row = db.execute("SELECT keyframe FROM notes WHERE id = ?", (note_id,)).fetchone()
        return None if row is None or row[0] is None else bytes(row[0])

    def forget(self, note_id: int) -> bool:
        """Forget note ``note_id`` (its words, facts and keyframe); whether there was one."""
        with self._transaction("forget a note", write=True) as db:
            gone = db.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount
        if gone:
            self._clear_log()
        return gone > 0

    def forget_all(self) -> int:
        """Forget every note; how many there were."""
        with self._transaction("forget the notes", write=True) as db:
            gone: int = db.execute("DELETE FROM notes").rowcount
        if gone:
            self._clear_log()
        return gone

    def __len__(self) -> int:
        with self._transaction("count the notes") as db:
            count: int = db.execute("SELECT count(*) FROM notes").fetchone()[0]
        return count

    def close(self) -> None:
        """Close the file (the last connection to close folds the log into it)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MemoryStore({str(self.path)!r})"

    # --- inside -----------------------------------------------------------------------

    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        try:
            db = sqlite3.connect(self.path, timeout=busy_timeout_s, isolation_level=None,
                                 check_same_thread=False)
        except sqlite3.Error as exc:
            raise self._failure("open", exc) from exc
        try:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise BadInputError(
                    f"the memory database {self.path} cannot use a write-ahead log "
                    f"(journal mode {mode!r}): set memory.path to a file on a local disk")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA secure_delete=ON")
            db.execute("BEGIN IMMEDIATE")
            try:
                version: int = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise _newer(self.path, version)
                db.execute(_SCHEMA)
                if version == 0:
                    db.execute(f"PRAGMA application_id={APPLICATION_ID}")
                    db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            db.close()
            raise self._failure("open", exc) from exc
        except BaseException:
            db.close()
            raise
        return db

    @contextlib.contextmanager
    def _transaction(self, doing: str, *, write: bool = False) -> Iterator[sqlite3.Connection]:
        """One transaction; ``write``: take the write lock at once (readers never wait
        for a writer in WAL mode, nor hold one up)."""
        with self._lock:
            if self._db is None:
                raise ValueError(f"{self!r} is closed")
            db = self._db
            try:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise self._failure(doing, exc) from exc

    def _clear_log(self) -> None:
        """Fold the log into the file and empty it, so forgotten pages leave the disk
        (a no-op while another process reads: its next checkpoint does it)."""
        with contextlib.suppress(sqlite3.Error), self._lock:
            if self._db is not None:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()

    def _failure(self, doing: str, exc: sqlite3.Error) -> BadInputError:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            return _corrupt(self.path, str(exc))
        return BadInputError(
            f"cannot {doing} in the memory database {self.path}: {exc} (check that the file "
            "and its folder are writable, or set memory.path to another file)")

    def _stored(self, row: tuple[Any, ...]) -> StoredNote:
        note_id, text, time, lat, lon, facts, keyframe_bytes = row
        try:
            timestamp = datetime.fromisoformat(time)
            note = Note(text=text, timestamp=timestamp, facts=Facts.from_wire(json.loads(facts)),
                        location=None if lat is None or lon is None else (lat, lon))
        except (ValueError, TypeError, ProtocolError) as exc:
            raise BadInputError(
                f"note {note_id} in the memory database {self.path} cannot be read ({exc}): "
                f"`glasses-agent memory forget {note_id}` removes it") from exc
        return StoredNote(id=note_id, note=note, keyframe_bytes=keyframe_bytes)


def _check_existing(path: Path) -> None:
    """Refuse, before writing anything, a file that is not a healthy memory of ours."""
    if not path.is_file():
        raise BadInputError(f"the memory database {path} is not a file "
                            "(set memory.path to a file)")
    try:
        with path.open("rb") as f:
            head = f.read(len(_SQLITE_HEADER))
    except OSError as exc:
        raise BadInputError(f"cannot read the memory database {path}: {exc.strerror or exc} "
                            "(check its permissions, or set memory.path)") from exc
    if not head:
        return  # an empty file is an empty database: SQLite starts one in it
    if head != _SQLITE_HEADER:
        raise _corrupt(path, "it is not a SQLite database")
    # A read-only connection writes nothing to the file (no checkpoint on close), so a
    # copy made after it has the bytes as they were. For a file in WAL mode it leaves
    # an empty log and its index behind: removed when they were not there before.
    log, index = path.with_name(f"{path.name}-wal"), path.with_name(f"{path.name}-shm")
    leftovers = [p for p in (log, index) if not p.exists()]
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            problems = [str(r[0]) for r in db.execute("PRAGMA quick_check").fetchall()]
            app_id: int = db.execute("PRAGMA application_id").fetchone()[0]
            version: int = db.execute("PRAGMA user_version").fetchone()[0]
            tables = {str(r[0]) for r in db.execute(
                "SELECT name FROM sqlite_schema WHERE type = 'table'")}
        finally:
            db.close()
            # (A log with something in it: another process began writing meanwhile.)
            if log not in leftovers or not log.exists() or log.stat().st_size == 0:
                for p in leftovers:
                    p.unlink(missing_ok=True)
    except sqlite3.Error as exc:
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
            raise _corrupt(path, str(exc)) from exc
        raise BadInputError(f"cannot read the memory database {path}: {exc} "
                            "(check its permissions, or set memory.path)") from exc
    if problems != ["ok"]:
        raise _corrupt(path, "; ".join(" ".join(p.split()) for p in problems[:2]))
    if app_id != APPLICATION_ID and (app_id != 0 or tables - {"notes", "sqlite_sequence"}):
        raise BadInputError(f"{path} is a SQLite database but not a glasses-agent memory "
                            "(left untouched): set memory.path to another file")
    if version > SCHEMA_VERSION:
        raise _newer(path, version)


def _newer(path: Path, version: int) -> BadInputError:
    return BadInputError(
        f"the memory database {path} was written by a newer glasses-agent (schema {version}; "
        f"this one reads up to {SCHEMA_VERSION}), left untouched: upgrade glasses-agent, "
        "or set memory.path to another file")


def _corrupt(path: Path, reason: str) -> BadInputError:
    """The error for a damaged file, after keeping a copy of it beside it."""
    try:
        copy = _keep_copy(path)
    except OSError as exc:
        kept = f"no copy could be made ({exc.strerror or exc}); the file is left as it is"
        copy = path
    else:
        kept = f"a copy is kept as {copy}"
    return BadInputError(
        f"the memory database {path} is damaged ({reason}); {kept}. Move {path.name} away "
        f"(or set memory.path) to start an empty memory; `sqlite3 {copy} .recover` may get "
        "notes back")


def _keep_copy(path: Path) -> Path:
    """Copy ``path`` (and its ``-wal``) to ``<name>.corrupt-<local time>``, never over a
    file; an existing copy with the same bytes is named instead of making another."""
    for earlier in sorted(path.parent.glob(f"{path.name}.corrupt-*")):
        if (not earlier.name.endswith("-wal") and earlier.is_file()
                and filecmp.cmp(earlier, path, shallow=False)):
            return earlier
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    for n in itertools.count():
        copy = path.with_name(f"{path.name}.corrupt-{stamp}" + (f"-{n}" if n else ""))
        try:
            _copy_new(path, copy)
        except FileExistsError:
            continue
        break
    log = path.with_name(f"{path.name}-wal")
    if log.is_file() and log.stat().st_size:
        with contextlib.suppress(FileExistsError):
            _copy_new(log, copy.with_name(f"{copy.name}-wal"))
    return copy


def _copy_new(source: Path, target: Path) -> None:
    """Copy into a file that must not exist yet (``FileExistsError`` if it does)."""
    with source.open("rb") as src, target.open("xb") as dst:
        try:
            shutil.copyfileobj(src, dst)
            dst.flush()
            os.fsync(dst.fileno())
        except BaseException:
            target.unlink(missing_ok=True)
            raise
