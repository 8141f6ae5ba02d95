"""The MCAP file (and the live view) that a recorder writes to, with its size budget.

``LogWriter`` owns one ``foxglove.Context``: the MCAP writer and, with ``live``,
the Foxglove WebSocket server are both sinks of it, so the live view shows
exactly the channels the file gets. Chunks are LZ4-compressed (readable by the
standard ``mcap`` reader with what it installs) and finished every
``flush_every_s`` (``flush``): after a crash, everything up to the last
finished chunk reads back.

The size budget counts the bytes of the messages written. Past
``CAMERA_SHARE`` of it camera frames are dropped, past ``MEDIA_SHARE`` audio and
keyframes too, and at the budget everything but the closing records; each
step is said once, on ``/log`` and to ``notice``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from glasses_agent.errors import BadInputError
from glasses_agent.fieldlog.schemas import CHANNELS, LOG, SESSION_END, Channel, json_schema

__all__ = ["CAMERA_SHARE", "MEDIA_SHARE", "LogWriter"]

CAMERA_SHARE: Final = 0.8
MEDIA_SHARE: Final = 0.95
_LEVELS: Final = {"info": "Info", "warning": "Warning", "error": "Error"}


def _foxglove() -> Any:
    try:
        import foxglove
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise BadInputError("recording needs the foxglove-sdk package: "
                            "pip install -c constraints.lock foxglove-sdk") from exc
    return foxglove


class LogWriter:
    """See the module docstring. ``write`` from any thread; ``close`` once."""

    def __init__(self, path: Path | None, *, budget_bytes: int = 0, chunk_bytes: int = 1 << 20,
                 live: tuple[str, int] | None = None,
                 notice: Callable[[str], None] | None = None) -> None:
        foxglove = _foxglove()
        from foxglove.mcap import MCAPCompression, MCAPWriteOptions

        self.path = path
        self.budget_bytes = budget_bytes
        self.notice = notice or (lambda text: None)
        self.context = foxglove.Context()
        options = MCAPWriteOptions(compression=MCAPCompression.Lz4, chunk_size=chunk_bytes,
                                   profile="glasses-agent")
        self._mcap: Any = None  # None: the live view only
        if path is not None:
            try:
                self._mcap = foxglove.open_mcap(path, context=self.context,
                                                writer_options=options)
            except Exception as exc:  # the SDK raises its own error types for I/O problems
                raise BadInputError(f"cannot write the field log {path}: {exc}") from exc
        self.server: Any = None
        if live is not None:
            self.server = self._serve(foxglove, *live)
        self._channels = {c.topic: self._channel(foxglove, c) for c in CHANNELS}
        self._lock = threading.Lock()
        self.bytes_written = 0
        self.messages: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self._refusing = -1  # the highest priority now refused (-1: none)
        self._closed = False

    def _serve(self, foxglove: Any, host: str, port: int) -> Any:
        try:
            return foxglove.start_server(name="glasses-agent", host=host, port=port,
                                         context=self.context)
        except Exception as exc:
            if self._mcap is not None:
                self._mcap.close()
            raise BadInputError(f"cannot serve the live view on {host}:{port}: {exc} "
                                f"(another --live PORT?)") from exc

    def _channel(self, foxglove: Any, channel: Channel) -> Any:
        if channel.schema.startswith("foxglove."):
            from foxglove import messages

            schema = getattr(messages, channel.schema.removeprefix("foxglove.")).get_schema()
            return foxglove.Channel(channel.topic, schema=schema, message_encoding="protobuf",
                                    context=self.context)
        schema = foxglove.Schema(name=channel.schema, encoding="jsonschema",
                                 data=json.dumps(json_schema(channel)).encode())
        return foxglove.Channel(channel.topic, schema=schema, message_encoding="json",
                                context=self.context)

    @property
    def live_port(self) -> int | None:
        return int(self.server.port) if self.server is not None else None

    def write(self, channel: Channel, payload: bytes, log_time_ns: int) -> bool:
        """Write one message (False: dropped for the budget, or the log is closed)."""
        with self._lock:
            if self._closed:
                return False
            if not self._room_for(channel, len(payload)):
                self.dropped[channel.topic] += 1
                return False
            self.bytes_written += len(payload)
            self.messages[channel.topic] += 1
        self._channels[channel.topic].log(payload, log_time=log_time_ns)
        return True

    def write_json(self, channel: Channel, record: dict[str, Any], log_time_ns: int) -> bool:
        return self.write(channel, json.dumps(record, allow_nan=False,
                                              default=str).encode(), log_time_ns)

    def _room_for(self, channel: Channel, size: int) -> bool:
        """The budget's rule (under the lock): may ``channel`` have ``size`` more bytes?"""
        if self.budget_bytes <= 0 or channel in (LOG, SESSION_END):
            return True
        used = (self.bytes_written + size) / self.budget_bytes
        priority = 0 if used > CAMERA_SHARE else -1
        priority = 1 if used > MEDIA_SHARE else priority
        priority = 2 if used > 1.0 else priority
        if priority > self._refusing:
            self._refusing = priority
            what = ("camera frames", "camera frames, audio and keyframes",
                    "everything")[priority]
            self._say_locked("warning", f"the log is at {self.bytes_written / 1e6:.1f} of "
                                        f"{self.budget_bytes / 1e6:.1f} MB: {what} dropped "
                                        "from now on")
        return channel.priority > self._refusing

    def say(self, level: str, text: str, log_time_ns: int | None = None) -> None:
        """A notice on ``/log`` (and to ``notice``)."""
        with self._lock:
            self._say_locked(level, text, log_time_ns)

    def _say_locked(self, level: str, text: str, log_time_ns: int | None = None) -> None:
        from foxglove.messages import Log, LogLevel, Timestamp

        now_ns = log_time_ns or time.time_ns()
        record = Log(timestamp=Timestamp(now_ns // 1_000_000_000, now_ns % 1_000_000_000),
                     level=getattr(LogLevel, _LEVELS.get(level, "Info")), message=text,
                     name="fieldlog")
        payload = record.encode()
        self.bytes_written += len(payload)
        self.messages[LOG.topic] += 1
        if not self._closed:
            self._channels[LOG.topic].log(payload, log_time=now_ns)
        if level != "info":
            self.notice(f"field log: {text}")

    def flush(self) -> None:
        """Finish the current chunk and hand it to the OS (what a crash keeps)."""
        with self._lock:
            if not self._closed and self._mcap is not None:
                self._mcap.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self.server is not None:
            self.server.stop()
        if self._mcap is not None:
            self._mcap.close()
