"""The field-log recorder: the edge's ``Tap``, written to an MCAP file (and a live view).

    with Recorder.open("walk.mcap", config, command="run") as recorder:
        runtime = build_runtime(config, inputs, cloud=cloud, tap=recorder)
        await runtime.run()

Every tap call returns at once: it turns what it was given into a record (cheap)
and queues it; one worker thread writes them and finishes a chunk every
``[fieldlog] flush_every_s``. Camera frames are chosen, blurred and encoded on
a thread of their own (``camera.CameraKeeper``: a few per second, latest wins,
and the frame each turn's perception saw, which replay needs), so the camera
never holds up the rest. Audio, events and wire messages are never dropped but
by the size budget (``writer.LogWriter``).

Privacy: frames are kept only while the capture LED is on (the runtime's
``LedChanged``), with faces blurred by the edge's ``FaceRedactor`` (the primary
detector, then a different one checks the JPEG) unless ``[fieldlog] blur_faces``
is off; protocol messages lose their tokens (``records.wire_record``); the
microphone is kept only with ``[fieldlog] audio`` (``--record-audio``).

Time: ``log_time`` is the wall clock (ns since the epoch), what Foxglove's
timeline shows; records also keep the runtime clock's ``timestamp_s``. The
runtime tells its clock at the start (``session``), which anchors one to the
other.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from glasses_agent import __version__
from glasses_agent.config import Config, FieldLogConfig, masked_dict
from glasses_agent.edge.events import Decided, LedChanged, Perceived, RuntimeEvent, TurnTimings
from glasses_agent.errors import BadInputError
from glasses_agent.fieldlog import records
from glasses_agent.fieldlog.camera import CameraKeeper
from glasses_agent.fieldlog.schemas import (
    AUDIO,
    CAMERA,
    CAMERA_ANNOTATIONS,
    EVENT_TOPICS,
    FORMAT_VERSION,
    HEARING_CONTROL,
    HEARING_FRAMES,
    KEYFRAME,
    LOCATION,
    PERCEPTION,
    PROTOCOL,
    SESSION,
    SESSION_END,
    TTS,
    VAD,
)
from glasses_agent.fieldlog.writer import LogWriter
from glasses_agent.frames import AudioChunk, Frame, Perception, VideoFrame

__all__ = ["Recorder", "log_path"]

logger = logging.getLogger("glasses_agent.fieldlog")

_MAX_QUEUED = 20_000  # records waiting for the worker; past this they are dropped (counted)


def log_path(path: str | Path) -> Path:
    """Where to record: ``path``, or a new timestamped file in it when it is a folder.
    An existing file is refused: field logs are not overwritten."""
    target = Path(path).expanduser()
    if target.is_dir():
        return target / f"glasses-{datetime.now():%Y%m%d-%H%M%S}.mcap"
    if target.exists():
        raise BadInputError(f"{target} exists: field logs are never overwritten; give a new "
                            "file name or a folder (a new file is made in it)")
    if not target.parent.is_dir():
        raise BadInputError(f"cannot record to {target}: the folder {target.parent} "
                            "does not exist")
    return target


class Recorder:
    """See the module docstring. Implements ``glasses_agent.edge.events.Tap``."""

    def __init__(self, writer: LogWriter, config: Config, *, command: str = "",
                 redactor: Any = None, notice: Callable[[str], None] | None = None) -> None:
        self.writer = writer
        self.config = config
        self.settings: FieldLogConfig = config.fieldlog
        self.command = command
        self.redactor = redactor
        self.notice = notice or (lambda text: print(text, file=sys.stderr))
        self._anchor = (time.time_ns(), time.monotonic())  # until the runtime tells its clock
        self._queue: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._last_perceived: tuple[Perception, VideoFrame] | None = None
        self.camera = CameraKeeper(camera_fps=self.settings.camera_fps,
                                   jpeg_quality=self.settings.jpeg_quality, redactor=redactor,
                                   write=self._frame_ready)
        self.dropped_records = 0
        self._closed = False
        self._worker = threading.Thread(target=self._work, name="fieldlog", daemon=True)
        self._worker.start()

    @classmethod
    def open(cls, path: str | Path | None, config: Config, *, command: str = "",
             live_port: int | None = None, audio: bool | None = None,
             notice: Callable[[str], None] | None = None) -> Recorder:
        """A recorder writing to ``path`` (see ``log_path``; None: no file, the live view
        only); ``live_port``: also serve the channels to Foxglove there (0: any free port);
        ``audio`` overrides ``[fieldlog] audio``."""
        settings = config.fieldlog
        if audio is not None:
            config = dataclasses.replace(config, fieldlog=dataclasses.replace(settings,
                                                                              audio=audio))
        redactor = _redactor(config) if settings.blur_faces else None
        live = (settings.live_host, live_port) if live_port is not None else None
        writer = LogWriter(None if path is None else log_path(path),
                           budget_bytes=int(settings.max_mb * 1e6),
                           chunk_bytes=max(16, settings.chunk_kb) * 1024, live=live,
                           notice=notice)
        return cls(writer, config, command=command, redactor=redactor, notice=notice)

    # --- time ---------------------------------------------------------------------------

    def _ns(self, clock_s: float) -> int:
        """The wall clock (ns) at runtime-clock time ``clock_s``."""
        wall_ns, at_s = self._anchor
        return wall_ns + int(round((clock_s - at_s) * 1e9))

    # --- the worker ---------------------------------------------------------------------

    def _put(self, job: Callable[[], None]) -> None:
        if self._closed:
            return
        if self._queue.qsize() >= _MAX_QUEUED:
            self.dropped_records += 1
            return
        self._queue.put(job)

    def _work(self) -> None:
        last_flush = time.monotonic()
        every_s = max(0.05, self.settings.flush_every_s)
        while True:
            timeout = max(0.0, last_flush + every_s - time.monotonic())
            try:
                job = self._queue.get(timeout=timeout)
            except queue.Empty:
                job = _nothing
            if job is None:
                return
            try:
                job()
            except Exception:  # one bad record must not end the log
                logger.exception("a field-log record failed")
            if time.monotonic() - last_flush >= every_s:
                self.writer.flush()
                last_flush = time.monotonic()

    # --- Tap: the session and the events ------------------------------------------------

    def session(self, info: Mapping[str, Any]) -> None:
        clock_s = float(info.get("clock_s", time.monotonic()))
        self._anchor = (time.time_ns(), clock_s)
        wall_ns = self._anchor[0]
        config = masked_dict(self.config)
        record = {
            "format": FORMAT_VERSION, "version": __version__, "command": self.command,
            "started_at": datetime.now().astimezone().isoformat(), "wall_ns": wall_ns,
            "clock_s": clock_s, "config": config, "models": dict(info.get("models", {})),
            "options": dict(info.get("options", {})), "notes": list(info.get("notes", [])),
            "camera": bool(info.get("camera")), "cloud": bool(info.get("cloud")),
            "record": config["fieldlog"],
        }
        options: dict[str, Any] = record["options"]  # type: ignore[assignment]
        location = options.get("location")
        self._put(lambda: self._write_session(record, wall_ns, location))

    def _write_session(self, record: dict[str, Any], wall_ns: int,
                       location: list[float] | None) -> None:
        self.writer.write_json(SESSION, record, wall_ns)
        kept = "with" if self.settings.audio else "without"
        faces = "faces blurred" if self.redactor is not None else "faces NOT blurred"
        self.writer.say("info", f"recording {self.command or 'a session'}: camera at "
                                f"{self.settings.camera_fps:g} fps ({faces}), {kept} audio",
                        wall_ns)
        if location:
            from foxglove.messages import LocationFix

            fix = LocationFix(timestamp=records._timestamp(wall_ns), frame_id="glasses",
                              latitude=float(location[0]), longitude=float(location[1]))
            self.writer.write(LOCATION, bytes(fix.encode()), wall_ns)

    def event(self, event: RuntimeEvent) -> None:
        if isinstance(event, Perceived):
            return  # recorded with its frame by ``perceived``
        if isinstance(event, LedChanged):
            if event.on:
                self.camera.led_on = True
            else:
                self.camera.dark()
                self._last_perceived = None
        elif isinstance(event, Decided) and self._last_perceived is not None:
            perception, frame = self._last_perceived  # what this turn's perception saw
            self.camera.want(frame, list(perception.faces))
        channel = EVENT_TOPICS.get(type(event))
        if channel is None:
            return
        if isinstance(event, TurnTimings):
            at_s = event.end_of_speech_s + event.total_ms / 1000
        else:
            at_s = event.timestamp_s
        record, log_ns = records.event_record(event), self._ns(at_s)
        self._put(lambda: self._write_json(channel, record, log_ns))

    def _write_json(self, channel: Any, record: dict[str, Any], log_ns: int) -> None:
        self.writer.write_json(channel, record, log_ns)

    # --- Tap: the camera ----------------------------------------------------------------

    def camera_frame(self, frame: VideoFrame) -> None:
        self.camera.offer(frame)

    def perceived(self, perception: Perception, frame: VideoFrame) -> None:
        if not self.camera.led_on:
            return
        self._last_perceived = (perception, frame)
        log_ns = self._ns(frame.timestamp_s)  # the time of the frame's image, if kept
        record = records.perception_record(perception, frame_index=frame.index,
                                           image_log_time_ns=log_ns)
        annotations = records.annotations_message(perception, log_ns)

        def job() -> None:
            self.writer.write_json(PERCEPTION, record, log_ns)
            self.writer.write(CAMERA_ANNOTATIONS, annotations, log_ns)
        self._put(job)

    def _frame_ready(self, frame: VideoFrame, jpeg: bytes) -> None:
        """From the camera keeper's thread: a frame blurred and encoded, to be written."""
        log_ns = self._ns(frame.timestamp_s)
        message = records.image_message(jpeg, log_ns, "camera")
        self._put(lambda: self._write(CAMERA, message, log_ns))

    # --- Tap: hearing, speaking, the wire -----------------------------------------------

    def heard_audio(self, chunk: AudioChunk) -> None:
        if self.settings.audio:
            now_ns = time.time_ns()
            self._put(lambda: self._write(AUDIO, records.audio_message(chunk), now_ns))

    def _write(self, channel: Any, payload: bytes, log_ns: int) -> None:
        self.writer.write(channel, payload, log_ns)

    def vad(self, start_s: float, probability: float) -> None:
        if self.settings.vad:
            record = {"start_s": round(start_s, 4), "probability": round(probability, 4)}
            now_ns = time.time_ns()
            self._put(lambda: self._write_json(VAD, record, now_ns))

    def listener_frame(self, frame: Frame, audio_s: float, wall_s: float) -> None:
        record, log_ns = records.listener_record(frame, audio_s, wall_s), self._ns(wall_s)
        self._put(lambda: self._write_json(HEARING_FRAMES, record, log_ns))

    def hearing_control(self, kind: Literal["armed", "button"], audio_s: float,
                        value: float | str) -> None:
        record: dict[str, Any] = {"kind": kind, "audio_s": audio_s}
        if kind == "armed":
            until = float(value)
            record["until_audio_s"] = None if until == float("inf") else until
        else:
            record["button"] = str(value)
        now_ns = time.time_ns()
        self._put(lambda: self._write_json(HEARING_CONTROL, record, now_ns))

    def spoken(self, text: str, now_s: float, synth_ms: float, duration_s: float) -> None:
        record = {"timestamp_s": now_s, "text": text, "synth_ms": round(synth_ms, 2),
                  "duration_s": round(duration_s, 4)}
        log_ns = self._ns(now_s)
        self._put(lambda: self._write_json(TTS, record, log_ns))

    def wire(self, direction: Literal["sent", "received"], data: str | bytes,
             now_s: float) -> None:
        log_ns = self._ns(now_s)

        def job() -> None:
            self.writer.write_json(PROTOCOL, records.wire_record(direction, data, now_s),
                                   log_ns)
            if isinstance(data, bytes) and direction == "sent":
                jpeg = records.keyframe_jpeg(data)
                if jpeg is not None:
                    self.writer.write(KEYFRAME, records.image_message(jpeg, log_ns,
                                                                      "cloud_keyframe"), log_ns)
        self._put(job)

    # --- the end ------------------------------------------------------------------------

    def close(self) -> Path | None:
        """Write what is queued and the closing records; the file is complete after this."""
        if self._closed:
            return self.writer.path
        self.camera.close()
        self._closed = True
        self._queue.put(None)
        self._worker.join()
        writer = self.writer
        dropped = dict(writer.dropped)
        if self.camera.skipped:
            dropped["camera frames skipped (recorder busy)"] = self.camera.skipped
        if self.dropped_records:
            dropped["records (recorder queue full)"] = self.dropped_records
        writer.write_json(SESSION_END, {"messages": dict(writer.messages), "dropped": dropped,
                                        "bytes": writer.bytes_written,
                                        "budget_bytes": writer.budget_bytes}, time.time_ns())
        writer.close()
        return writer.path

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _nothing() -> None:
    return None


def _redactor(config: Config) -> Any:
    """The edge's face redactor, the recorder's own (detectors are not shared across
    threads), encoding at ``[fieldlog] jpeg_quality``."""
    from glasses_agent.edge.perception.privacy import FaceRedactor

    redactor = FaceRedactor.from_config(config)
    redactor.jpeg_quality = config.fieldlog.jpeg_quality
    return redactor
