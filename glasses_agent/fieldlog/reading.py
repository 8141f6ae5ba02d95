"""A field log read back: its records in time order, with clear words for a damaged file.

``read_log(path)`` reads the file front to back with the standard ``mcap``
package (``StreamReader``), record by record, knowing the byte offset of each:

- a file that ends in the middle of a record was cut off (a crash, a full disk,
  a copy in progress): everything before it is used and ``FieldLog.cut_at`` says
  where it ends (``note`` gives the sentence to show);
- a record that cannot be read (bad magic, a chunk whose CRC does not match or
  does not decompress, JSON that does not parse) is a ``BadInputError`` naming the
  byte offset of that record: damage, not a crash, so nothing after it is trusted.

JSON channels come back as dicts; the Foxglove channels this package reads
(camera, keyframes, audio, log) as decoded protobuf messages, through the
schema stored in the file itself.
"""

from __future__ import annotations

import bisect
import json
import sys
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from glasses_agent.errors import BadInputError
from glasses_agent.fieldlog.schemas import AUDIO, SESSION, SESSION_END, Channel

__all__ = ["FieldLog", "Record", "read_log"]


@dataclass(frozen=True, slots=True)
class Record:
    """One message: its topic, wall-clock ``log_time_ns``, and its data (a dict for JSON
    channels, the raw bytes for protobuf ones; ``FieldLog.decode`` reads those)."""

    topic: str
    log_time_ns: int
    data: Any
    schema: str = ""


@dataclass(slots=True)
class FieldLog:
    """The records of one log, in ``log_time_ns`` order (the order written, for ties)."""

    path: Path
    records: list[Record]
    size_bytes: int
    cut_at: int | None = None  # the byte where a cut-off file ends
    complete: bool = False  # the summary and footer were read
    _schemas: dict[str, bytes] = field(default_factory=dict)
    _classes: dict[str, Any] = field(default_factory=dict)

    def topic(self, channel: Channel | str) -> list[Record]:
        name = channel if isinstance(channel, str) else channel.topic
        return [r for r in self.records if r.topic == name]

    def json(self, channel: Channel | str) -> list[dict[str, Any]]:
        """The records of a JSON channel, each with ``log_time_ns`` added."""
        return [{**r.data, "log_time_ns": r.log_time_ns} for r in self.topic(channel)]

    @property
    def session(self) -> dict[str, Any]:
        """The ``/session`` record; ``BadInputError`` if the file has none."""
        found = self.topic(SESSION)
        if not found:
            raise BadInputError(f"{self.path} is not a glasses-agent field log "
                                "(it has no /session record)" + (
                                    f"; it was cut off at byte {self.cut_at}" if self.cut_at
                                    is not None else ""))
        data: dict[str, Any] = found[0].data
        return data

    @property
    def session_end(self) -> dict[str, Any] | None:
        found = self.topic(SESSION_END)
        return found[0].data if found else None

    @property
    def note(self) -> str:
        """One line about a log that did not end cleanly ("" when it did)."""
        if self.cut_at is None:
            return ""
        return (f"{self.path}: cut off at byte {self.cut_at} of {self.size_bytes} (the "
                f"recording did not finish: a crash, a kill or a full disk); using the "
                f"{len(self.records)} messages before it")

    def decode(self, record: Record) -> Any:
        """A protobuf record as its message (fields by name: ``.data``, ``.format``, ...)."""
        cls = self._classes.get(record.schema)
        if cls is None:
            cls = self._classes[record.schema] = _message_class(record.schema,
                                                                self._schemas[record.schema])
        return cls.FromString(record.data)

    def audio(self) -> Iterator[tuple[float, np.ndarray, int]]:
        """(audio time of the block's start, float32 samples in [-1, 1], rate) per block."""
        for record in self.topic(AUDIO):
            block = self.decode(record)
            samples = np.frombuffer(block.data, dtype="<i2").astype(np.float32) / 32768.0
            start_s = block.timestamp.seconds + block.timestamp.nanos / 1e9
            yield start_s, samples, int(block.sample_rate)

    def images(self, channel: Channel) -> list[tuple[int, bytes]]:
        """(log_time_ns, JPEG) of each image on ``channel``, in time order."""
        return [(r.log_time_ns, bytes(self.decode(r).data)) for r in self.topic(channel)]


def _message_class(name: str, descriptor_set: bytes) -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


class _Reading:
    """The state of one pass over the file (see ``read_log``)."""

    def __init__(self, path: Path, topics: Collection[str] | None) -> None:
        self.path = path
        self.topics = topics
        self.schemas: dict[int, tuple[str, str, bytes]] = {}  # id -> name, encoding, data
        self.channels: dict[int, tuple[str, int, str]] = {}  # id -> topic, schema id, enc
        self.records: list[Record] = []
        self.complete = False

    def damaged(self, offset: int, what: str) -> BadInputError:
        return BadInputError(f"{self.path} is damaged at byte {offset}: {what} (the "
                             f"{len(self.records)} messages before it are readable; nothing "
                             "after it is trusted)")

    def take(self, record: Any, offset: int) -> None:
        from mcap.records import Channel as McapChannel
        from mcap.records import Chunk, Footer, Message, Schema
        from mcap.stream_reader import breakup_chunk

        if isinstance(record, Chunk):
            try:
                inner = breakup_chunk(record, validate_crc=True)
            except Exception as exc:  # lz4/CRC/struct errors: the chunk is damaged
                raise self.damaged(offset, f"a chunk that does not read ({exc})") from exc
            for item in inner:
                self.take(item, offset)
        elif isinstance(record, Schema):
            self.schemas[record.id] = (record.name, record.encoding, record.data)
        elif isinstance(record, McapChannel):
            self.channels[record.id] = (record.topic, record.schema_id, record.message_encoding)
        elif isinstance(record, Message):
            self.message(record, offset)
        elif isinstance(record, Footer):
            self.complete = True

    def message(self, message: Any, offset: int) -> None:
        channel = self.channels.get(message.channel_id)
        if channel is None:
            raise self.damaged(offset, f"a message on channel {message.channel_id}, which "
                                       "was never described")
        topic, schema_id, encoding = channel
        if self.topics is not None and topic not in self.topics:
            return
        schema = self.schemas.get(schema_id, ("", "", b""))[0]
        data: Any = message.data
        if encoding == "json":
            try:
                data = json.loads(message.data)
            except ValueError as exc:
                raise self.damaged(offset, f"a {topic} message that is not JSON") from exc
        self.records.append(Record(topic, message.log_time, data, schema))


def read_log(path: str | Path, *, topics: Collection[str] | None = None,
             progress: bool = False) -> FieldLog:
    """The log at ``path`` (only ``topics``, when given); ``progress``: a progress bar on
    stderr (shown when stderr is a terminal). See the module docstring for damage."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise BadInputError(f"no field log at {path}" + (" (a folder)" if path.is_dir() else ""))
    size = path.stat().st_size
    state = _Reading(path, topics)
    with path.open("rb") as f:
        cut_at = _read_records(f, state, size, progress)
    if cut_at is not None and not state.records:
        raise BadInputError(f"{path} holds no complete chunk: it was cut off at byte {cut_at} "
                            f"of {size} (nothing was written out before the recording stopped)")
    order = sorted(range(len(state.records)), key=lambda i: (state.records[i].log_time_ns, i))
    log = FieldLog(path=path, records=[state.records[i] for i in order], size_bytes=size,
                   cut_at=cut_at, complete=state.complete)
    log._schemas = {name: data for name, enc, data in state.schemas.values()
                    if enc == "protobuf"}
    return log


def _read_records(f: IO[bytes], state: _Reading, size: int, progress: bool) -> int | None:
    """Every record into ``state``; the offset where a cut-off file ends (None: it did not)."""
    from mcap.exceptions import EndOfFile, InvalidMagic
    from mcap.stream_reader import StreamReader

    bar = _progress(size, state.path.name, progress)
    records = StreamReader(f, emit_chunks=True, record_size_limit=1 << 30).records
    offset = 0
    try:
        while True:
            offset = f.tell()
            try:
                record = next(records)
                state.take(record, offset)
            except StopIteration:
                return None
            except EndOfFile:
                return offset
            except Exception as exc:
                if isinstance(exc, InvalidMagic) and offset == 0:
                    raise BadInputError(f"{state.path} is not an MCAP file (no MCAP magic at "
                                        "byte 0)") from exc
                # A record that runs past the end of the file was cut off, not damaged (the
                # chunk being written when the recorder died still has its length unset).
                if f.tell() >= size or _runs_past_the_end(f, offset, size):
                    return offset
                if isinstance(exc, BadInputError):
                    raise
                raise state.damaged(offset, f"an unreadable record ({exc})") from exc
            bar(f.tell())
    finally:
        bar(-1)


def _runs_past_the_end(f: IO[bytes], offset: int, size: int) -> bool:
    """Does the record at ``offset`` claim more bytes than the file has after it?"""
    f.seek(offset + 1)
    length = int.from_bytes(f.read(8), "little")
    return offset + 9 + length > size


def _progress(total: int, name: str, shown: bool) -> Callable[[int], None]:
    """A callable: position in bytes -> the bar moves; -1 closes it."""
    if not shown:
        return lambda position: None
    from tqdm import tqdm

    bar = tqdm(total=total, unit="B", unit_scale=True, desc=f"reading {name}", file=sys.stderr,
               leave=False, disable=None)

    def update(position: int) -> None:
        if position < 0:
            bar.close()
        else:
            bar.update(position - bar.n)

    return update


def nearest_before(times_ns: list[int], at_ns: int) -> int:
    """The index of the last time <= ``at_ns`` in sorted ``times_ns`` (-1: none)."""
    return bisect.bisect_right(times_ns, at_ns) - 1
