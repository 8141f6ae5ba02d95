"""Which camera frames a field log keeps, blurred and encoded on a thread of their own.

Blurring a frame's faces and checking the result with a second detector (the
edge's ``FaceRedactor``) takes a few hundred milliseconds on a small CPU, so it
never runs on the thread that writes the log: events and audio reach the file
(and the next finished chunk) whatever the camera costs. The thread runs at a
lower priority (nice +10) so it yields to the glasses themselves.

Kept: a frame every ``1 / [fieldlog] camera_fps`` seconds ("latest wins": a
frame waiting when a newer one comes is replaced, and counted as skipped), and
the frame each turn's perception saw (``want``), which replay needs. A frame
is never kept while the capture LED is off.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from glasses_agent.frames import VideoFrame

__all__ = ["CameraKeeper"]

logger = logging.getLogger("glasses_agent.fieldlog")

_KEEP_INDEXES = 256  # frame indexes remembered as kept (a frame is not kept twice)


@dataclass(eq=False, kw_only=True)
class CameraKeeper:
    """See the module docstring. ``write(frame, jpeg)`` is called on the keeper's thread;
    the thread starts with the keeper."""

    camera_fps: float
    jpeg_quality: int
    redactor: Any
    write: Callable[[VideoFrame, bytes], None]
    led_on: bool = field(default=True, init=False)
    skipped: int = field(default=0, init=False)
    _wanted: collections.deque[tuple[VideoFrame, Sequence[Any] | None]] = field(
        default_factory=lambda: collections.deque(maxlen=8), init=False, repr=False)
    _sampled: VideoFrame | None = field(default=None, init=False, repr=False)
    _last_sampled_s: float = field(default=float("-inf"), init=False, repr=False)
    _kept: collections.OrderedDict[int, None] = field(
        default_factory=collections.OrderedDict, init=False, repr=False)
    _wake: threading.Condition = field(default_factory=threading.Condition, init=False,
                                       repr=False)
    _closing: bool = field(default=False, init=False, repr=False)
    _thread: threading.Thread = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fieldlog-camera", daemon=True)
        self._thread.start()

    def offer(self, frame: VideoFrame) -> None:
        """A captured frame: kept if it is time for one (``camera_fps``)."""
        fps = self.camera_fps
        if fps <= 0 or not self.led_on or frame.timestamp_s - self._last_sampled_s < 1 / fps:
            return
        self._last_sampled_s = frame.timestamp_s
        with self._wake:
            if self._sampled is not None:
                self.skipped += 1  # still waiting: the newer frame replaces it
            self._sampled = frame
            self._wake.notify()

    def want(self, frame: VideoFrame, faces: Sequence[Any] | None) -> None:
        """A frame a turn used: kept (once), before any sampled frame."""
        if not self.led_on:
            return
        with self._wake:
            self._wanted.append((frame, faces))
            self._wake.notify()

    def dark(self) -> None:
        """The LED went off: nothing waiting is kept."""
        self.led_on = False
        with self._wake:
            self._wanted.clear()
            self._sampled = None

    def close(self) -> None:
        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()

    def _next(self) -> tuple[VideoFrame, Sequence[Any] | None] | None:
        with self._wake:
            while not self._wanted and self._sampled is None and not self._closing:
                self._wake.wait()
            if self._wanted:
                return self._wanted.popleft()
            if self._sampled is not None:
                frame, self._sampled = self._sampled, None
                return frame, None
            return None  # closing, nothing left

    def _run(self) -> None:
        with contextlib.suppress(OSError):  # yield to the glasses (Linux: per thread)
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)
        while (item := self._next()) is not None:
            frame, faces = item
            if frame.index in self._kept:
                continue
            try:
                jpeg = self._jpeg(frame, faces)
            except Exception:  # the privacy switch, an encoder failure: not kept
                logger.exception("a camera frame could not be made ready; not recorded")
                continue
            if jpeg is None or not self.led_on:  # the LED went off meanwhile: not kept
                continue
            self._kept[frame.index] = None
            if len(self._kept) > _KEEP_INDEXES:
                self._kept.popitem(last=False)
            self.write(frame, jpeg)

    def _jpeg(self, frame: VideoFrame, faces: Sequence[Any] | None) -> bytes | None:
        if self.redactor is not None:
            return bytes(self.redactor.outgoing_jpeg(frame.image_bgr, faces=faces).jpeg)
        from edge_models.opencv import cv2 as _cv2

        cv2 = _cv2()
        ok, data = cv2.imencode(".jpg", frame.image_bgr,
                                [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return bytes(data.tobytes()) if ok else None
