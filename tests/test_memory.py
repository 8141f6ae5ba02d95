"""The on-device memory: notes in a real SQLite file, across reopenings, a SIGKILL in the
middle of writing, damaged files, and the ``glasses-agent memory`` commands."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import pytest
from support.cli import assert_one_line_error, run_agent

from edge_models.photos import photo
from glasses_agent.config import MemoryConfig, load_config
from glasses_agent.edge.memory import (
    SCHEMA_VERSION,
    MemoryStore,
    default_memory_path,
    memory_path,
    open_memory,
)
from glasses_agent.edge.router import DeviceStatus, Note, route
from glasses_agent.errors import BadInputError
from glasses_agent.frames import LinkState, Perception, Query, TextLine
from glasses_agent.protocol import Facts, Location, SeenBarcode, SeenLabel

NOW = datetime(2026, 11, 3, 14, 5, tzinfo=timezone(timedelta(hours=-5)))
FACTS = Facts(
    text=("LEVEL 3", "Zone B"),
    labels=(SeenLabel(name="car", score=0.81), SeenLabel(name="parking meter", score=0.12)),
    center_labels=(SeenLabel(name="pillar", score=0.64),),
    barcodes=(SeenBarcode(type="QR code", data="https://park.example/b3"),),
    extra={"depth": "the pillar is 2 m away"},
)


@pytest.fixture(scope="module")
def jpeg() -> bytes:
    ok, data = cv2.imencode(".jpg", photo("coffee"), [cv2.IMWRITE_JPEG_QUALITY, 85])
    assert ok
    return bytes(data.tobytes())


def note(text: str, *, minutes: int = 0, facts: Facts = FACTS,
         location: tuple[float, float] | None = None) -> Note:
    return Note(text=text, timestamp=NOW + timedelta(minutes=minutes), facts=facts,
                location=location)


def _files(path: Path) -> bytes:
    """The database and its log, as they are on the disk."""
    log = path.with_name(path.name + "-wal")
    return path.read_bytes() + (log.read_bytes() if log.exists() else b"")


def test_add_list_get_forget_round_trip_across_reopening(tmp_path: Path, jpeg: bytes) -> None:
    path = tmp_path / "memory.sqlite"
    where = (48.85837, 2.29448)
    with MemoryStore(path, keep_location=True) as store:
        parked = store.add(note("where i parked", location=where), keyframe_jpeg=jpeg)
        shelf = store.add(note("the coffee is on the top shelf", minutes=5, facts=Facts()))
        code = store.add(note("the door code is 4512", minutes=9))
        assert (parked, shelf, code) == (1, 2, 3) and len(store) == 3
    with MemoryStore(path) as store:
        kept = store.notes()
        assert [s.id for s in kept] == [1, 2, 3]  # oldest first
        first = kept[0]
        assert first.note == note("where i parked", location=where)
        assert first.note.facts == FACTS and isinstance(first.note.facts.labels[0], SeenLabel)
        assert first.note.timestamp.utcoffset() == timedelta(hours=-5)
        assert first.has_keyframe and first.keyframe_bytes == len(jpeg)
        assert store.keyframe(1) == jpeg
        assert not kept[1].has_keyframe and store.keyframe(2) is None
        assert kept[1].note.facts == Facts()
        assert store.get(3) == kept[2] and store.get(99) is None and store.keyframe(99) is None
        assert store.forget(2) is True
        assert store.forget(2) is False
        # A second process (the CLI while the runtime runs) sees the same notes.
        with MemoryStore(path) as other:
            assert [s.id for s in other.notes()] == [1, 3]
            assert other.add(note("the bike is by the gate")) == 4  # forgotten ids not reused
        assert [s.note.text for s in store.notes()][-1] == "the bike is by the gate"
        assert store.forget_all() == 3
        assert store.notes() == [] and store.forget_all() == 0
    with MemoryStore(path) as store:
        assert store.notes() == []
        assert store.add(note("again")) == 5


def test_location_only_when_allowed_and_keyframes_only_when_kept(
        tmp_path: Path, jpeg: bytes) -> None:
    located = note("where i parked", location=(48.85837, 2.29448),
                   facts=Facts(text=("P3",), location=Location(lat=48.85837, lon=2.29448)))
    with MemoryStore(tmp_path / "a.sqlite") as store:  # the defaults: no location
        stored = store.get(store.add(located, keyframe_jpeg=jpeg))
        assert stored is not None and stored.has_keyframe
        assert stored.note.location is None and stored.note.facts.location is None
        assert stored.note.facts.text == ("P3",)
    with MemoryStore(tmp_path / "b.sqlite", keep_location=True, keep_keyframes=False) as store:
        stored = store.get(store.add(located, keyframe_jpeg=jpeg))
        assert stored is not None and stored.note == located
        assert not stored.has_keyframe and store.keyframe(stored.id) is None
    assert b"48.85837" not in _files(tmp_path / "a.sqlite")
    assert jpeg[200:264] not in _files(tmp_path / "b.sqlite")


def test_bad_notes_are_refused(tmp_path: Path, jpeg: bytes) -> None:
    with MemoryStore(tmp_path / "memory.sqlite") as store:
        with pytest.raises(ValueError, match="time zone"):
            store.add(Note(text="x", timestamp=datetime(2026, 11, 3, 14, 5)))
        with pytest.raises(ValueError, match="not a JPEG"):
            store.add(note("x"), keyframe_jpeg=b"\x89PNG\r\n\x1a\n" + jpeg)
        assert len(store) == 0
    with pytest.raises(ValueError, match="closed"):
        store.notes()


def test_forgotten_words_and_keyframe_leave_the_disk(tmp_path: Path, jpeg: bytes) -> None:
    path = tmp_path / "memory.sqlite"
    secret = "the safe code is 9183-ZEBRA"
    with MemoryStore(path) as store:
        kept = store.add(note("where i parked"))
        gone = store.add(note(secret), keyframe_jpeg=jpeg)
        files = _files(path)
        assert secret.encode() in files and jpeg[1000:1064] in files
        assert store.forget(gone)
        files = _files(path)  # checked while the store is still open
        assert secret.encode() not in files and jpeg[1000:1064] not in files
        assert b"where i parked" in files
        assert [s.id for s in store.notes()] == [kept]


def test_remember_then_recall_across_a_restart(tmp_path: Path, jpeg: bytes) -> None:
    path = tmp_path / "memory.sqlite"
    sign = Perception(timestamp_s=99.5, text=(
        TextLine(text="LEVEL 3", score=0.95, box=(0, 0, 50, 20)),
        TextLine(text="Zone B", score=0.9, box=(0, 30, 50, 50))))
    online = DeviceStatus(link=LinkState.CONNECTED)
    remember = route(Query(query_id="q1", text="Remember where I parked", timestamp_s=100.0,
                           perception=sign), now=NOW, device=online)
    assert remember.action == "remember" and remember.note is not None
    with open_memory(MemoryConfig(path=str(path))) as store:
        store.add(remember.note, keyframe_jpeg=jpeg)
    # The glasses restart: the runtime reads the notes back for the router.
    with open_memory(MemoryConfig(path=str(path))) as store:
        device = DeviceStatus(link=LinkState.OFFLINE, notes=[n.note for n in store.notes()])
    recall = route(Query(query_id="q2", text="Where did I park?", timestamp_s=200.0),
                   now=NOW + timedelta(hours=3, minutes=5), device=device)
    assert (recall.kind, recall.rule) == ("local", "recall")
    assert "where you parked, 3 hours ago" in recall.reply
    assert "LEVEL 3. Zone B." in recall.reply


_WRITER = """
import sys
from datetime import datetime, timezone
from glasses_agent.edge.memory import MemoryStore
from glasses_agent.protocol import Facts
from glasses_agent.edge.router import Note

jpeg = open(sys.argv[2], "rb").read()
store = MemoryStore(sys.argv[1])
i = 0
while True:
    note = Note(text=f"note {i}", timestamp=datetime.now(timezone.utc),
                facts=Facts(text=(f"line {i}",)))
    print(store.add(note, keyframe_jpeg=jpeg + bytes([i % 256]) * 4096), i, flush=True)
    i += 1
"""


def test_a_sigkill_while_writing_loses_nothing_committed(tmp_path: Path, jpeg: bytes) -> None:
    path, picture = tmp_path / "memory.sqlite", tmp_path / "keyframe.jpg"
    picture.write_bytes(jpeg)
    writer = subprocess.Popen([sys.executable, "-c", _WRITER, str(path), str(picture)],
                              stdout=subprocess.PIPE, text=True)
    assert writer.stdout is not None
    committed: dict[int, int] = {}
    try:
        for line in writer.stdout:
            note_id, i = map(int, line.split())
            committed[note_id] = i
            if len(committed) == 40:
                break
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        rest = writer.communicate(timeout=30)[0]
    assert writer.returncode == -signal.SIGKILL
    for line in rest.splitlines():
        note_id, i = map(int, line.split())
        committed[note_id] = i
    assert len(committed) >= 40
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    raw.close()
    with MemoryStore(path) as store:
        kept = {s.id: s for s in store.notes()}
        assert set(committed) <= set(kept)
        assert len(kept) <= len(committed) + 1  # at most the one killed before it said so
        for note_id, stored in kept.items():  # every note whole: nothing half-written
            i = int(stored.note.text.removeprefix("note "))
            assert committed.get(note_id, i) == i
            assert stored.note.facts.text == (f"line {i}",)
            assert store.keyframe(note_id) == jpeg + bytes([i % 256]) * 4096
        # The file takes new notes after the kill.
        assert store.add(note("after the kill")) == max(kept) + 1


def _assert_damaged(path: Path, original: bytes, error: BadInputError) -> Path:
    message = str(error)
    assert str(path) in message and "damaged" in message and "\n" not in message
    copies = sorted(path.parent.glob(path.name + ".corrupt-*"))
    assert len(copies) == 1 and str(copies[0]) in message
    assert copies[0].read_bytes() == original
    assert path.read_bytes() == original  # the user's file is left as it was
    return copies[0]


def test_a_file_that_is_not_sqlite_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    original = os.urandom(8192)
    path.write_bytes(original)
    with pytest.raises(BadInputError) as caught:
        MemoryStore(path)
    copy = _assert_damaged(path, original, caught.value)
    assert "not a SQLite database" in str(caught.value)
    # Asked again, the same copy is named rather than another made.
    with pytest.raises(BadInputError, match=str(copy)):
        MemoryStore(path)
    assert len(list(tmp_path.glob("memory.sqlite.corrupt-*"))) == 1


def test_a_truncated_database_is_refused_and_kept(tmp_path: Path, jpeg: bytes) -> None:
    path = tmp_path / "memory.sqlite"
    with MemoryStore(path) as store:
        for i in range(8):
            store.add(note(f"note {i}"), keyframe_jpeg=jpeg)
    whole = path.read_bytes()
    assert not path.with_name("memory.sqlite-wal").exists()  # all in the file on close
    original = whole[: len(whole) // 2]
    path.write_bytes(original)
    with pytest.raises(BadInputError) as caught:
        MemoryStore(path)
    copy = _assert_damaged(path, original, caught.value)
    # No litter beside it (the check's read-only connection leaves no -wal, no -shm).
    assert {p.name for p in tmp_path.iterdir()} == {"memory.sqlite", copy.name}


def test_a_newer_schema_or_another_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite"
    with MemoryStore(path) as store:
        store.add(note("where i parked"))
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.close()
    before = path.read_bytes()
    with pytest.raises(BadInputError, match=f"newer glasses-agent.*schema {SCHEMA_VERSION + 1}"):
        MemoryStore(path)
    assert path.read_bytes() == before and not list(tmp_path.glob("*.corrupt-*"))
    other = tmp_path / "answers.sqlite"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE answers (id TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(BadInputError, match="not a glasses-agent memory"):
        MemoryStore(other)
    assert [r[0] for r in sqlite3.connect(other).execute(
        "SELECT name FROM sqlite_schema")] == ["answers"]


def test_folders_are_made_and_unwritable_places_are_clear_errors(tmp_path: Path) -> None:
    deep = tmp_path / "a" / "b" / "memory.sqlite"
    with MemoryStore(deep) as store:
        store.add(note("x"))
    assert deep.is_file()
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(BadInputError, match="cannot create the folder"):
        MemoryStore(blocker / "memory.sqlite")
    with pytest.raises(BadInputError, match="is not a file"):
        MemoryStore(tmp_path / "a")


def test_where_the_file_lives(tmp_path: Path) -> None:
    home = Path("~").expanduser()
    assert default_memory_path({}) == home / ".local/share/glasses-agent/memory.sqlite"
    assert default_memory_path({"XDG_DATA_HOME": str(tmp_path)}) == (
        tmp_path / "glasses-agent" / "memory.sqlite")
    assert default_memory_path({"XDG_DATA_HOME": "relative"}) == default_memory_path({})
    config = load_config(environ={}, overrides=["memory.path=~/notes/m.sqlite"]).memory
    assert memory_path(config) == home / "notes" / "m.sqlite"
    defaults = MemoryConfig()
    assert (defaults.path, defaults.keep_keyframes, defaults.keep_location) == ("", True, False)
    assert memory_path(defaults, {"XDG_DATA_HOME": str(tmp_path)}).parent.name == "glasses-agent"


# --- the command line ------------------------------------------------------------------

def _cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_agent("memory", *args, config=config, timeout=60)


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert_one_line_error(proc, "glasses-agent memory: ", *words)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    config = tmp_path / "config.toml"
    config.write_text(f'[memory]\npath = "{tmp_path / "data" / "memory.sqlite"}"\n')
    return config


def test_cli_list_show_forget(tmp_path: Path, config_file: Path, jpeg: bytes) -> None:
    path = tmp_path / "data" / "memory.sqlite"
    empty = _cli(config_file, "list")
    assert empty.returncode == 0 and "No notes kept" in empty.stdout
    assert not path.exists()  # reading never creates the file
    with MemoryStore(path) as store:
        store.add(note("where i parked"), keyframe_jpeg=jpeg)
        store.add(note("the coffee is on the top shelf", minutes=5,
                       facts=Facts(center_labels=(SeenLabel(name="espresso", score=0.9),))))
        store.add(note("the door code is 4512", minutes=9, facts=Facts()))

    table = _cli(config_file, "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "WHEN", "NOTE", "SEEN", "KEYFRAME"]
    assert lines[1].startswith("1 ") and "where i parked" in lines[1]
    assert "LEVEL 3 / Zone B" in lines[1] and "KB" in lines[1]
    assert "2026-11-03 14:05-05:00" in lines[1]
    assert "espresso" in lines[2] and lines[3].rstrip().endswith("-")
    assert lines[-1] == f"3 notes in {path}"
    listed = json.loads(_cli(config_file, "list", "--json").stdout)
    assert [n["id"] for n in listed] == [1, 2, 3]
    assert listed[0]["time"] == "2026-11-03T14:05:00-05:00"
    assert Facts.from_wire(listed[0]["facts"]) == FACTS
    assert listed[0]["keyframe_bytes"] == len(jpeg) and listed[2]["keyframe_bytes"] == 0

    out = tmp_path / "keyframe.jpg"
    show = _cli(config_file, "show", "1", "--keyframe-out", str(out))
    assert show.returncode == 0, show.stderr
    assert "LEVEL 3 / Zone B" in show.stdout and "QR code" in show.stdout
    assert out.read_bytes() == jpeg
    _one_line_error(_cli(config_file, "show", "3", "--keyframe-out", str(out)), "no keyframe")

    forgot = _cli(config_file, "forget", "2")
    assert (forgot.returncode, forgot.stdout) == (0, "Forgot note 2.\n")
    _one_line_error(_cli(config_file, "forget", "2"), "no note 2")
    _one_line_error(_cli(config_file, "forget", "seven"), "'seven' is not a note id")
    _one_line_error(_cli(config_file, "forget"), "--all")
    _one_line_error(_cli(config_file, "show", "42"), "no note 42")
    everything = _cli(config_file, "forget", "--all")
    assert (everything.returncode, everything.stdout) == (0, "Forgot 2 notes.\n")
    assert json.loads(_cli(config_file, "list", "--json").stdout) == []


def test_cli_damaged_file_is_one_line_and_kept(tmp_path: Path, config_file: Path) -> None:
    path = tmp_path / "data" / "memory.sqlite"
    path.parent.mkdir()
    path.write_bytes(b"SQLite format 3\x00" + os.urandom(4000))
    proc = _cli(config_file, "list")
    _one_line_error(proc, str(path), "damaged", ".corrupt-")
    assert len(list(path.parent.glob("memory.sqlite.corrupt-*"))) == 1
