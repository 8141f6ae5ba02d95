"""Camera sources: a webcam, a video file, an image, or a folder of images.

Every source is a ``FrameReader`` (``open_camera`` picks one from a
``[camera] source`` string) that hands out BGR uint8 images, scaled down to fit
``width`` x ``height``. Two ways to consume one:

- ``iter_frames``: synchronous, one ``VideoFrame`` per image, timestamped with
  media time (for files: the CLI, tests, replays).
- ``CameraCapture``: the live path. A capture thread reads at ``fps`` and puts
  each frame into a one-slot ``Mailbox``: a newer frame replaces one that no
  one took (counted as dropped), so capture never blocks behind a slow model
  and nothing queues ("latest frame wins"). A small ring of recent frames is
  kept for keyframe choice (``glasses_agent.edge.perception.keyframe``).

A ``PrivacySwitch`` turns the camera path off: while it is on, the capture
thread reads nothing and holds no device (a webcam is released, so its LED goes
off), and the mailbox and ring are emptied.

The capture thread is the hardware's stand-in, not a stage: it stamps frames
with the injected ``Clock`` and paces itself in real time (``time.monotonic``),
as a camera delivers frames whatever the software's clock says.
"""

from __future__ import annotations

import collections
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2
from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.config import CameraConfig
from glasses_agent.errors import BadInputError, DeviceUnavailableError, GlassesError
from glasses_agent.frames import VideoFrame

__all__ = [
    "IMAGE_SUFFIXES",
    "CameraCapture",
    "CaptureStats",
    "FolderReader",
    "FrameReader",
    "ImageReader",
    "Mailbox",
    "PrivacySwitch",
    "VideoFileReader",
    "WebcamReader",
    "decode_image",
    "fit_within",
    "iter_frames",
    "open_camera",
    "read_image",
]

UInt8Array = npt.NDArray[np.uint8]
T = TypeVar("T")

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm"}
)
_DEVICES_HINT = (
    "use a video file, an image or a folder of images as the camera source "
    "(--set camera.source=PATH) and run `glasses-agent devices` to list cameras"
)


@contextlib.contextmanager
def _native_stderr_silenced() -> Iterator[None]:
    """Point the C-level stderr at /dev/null for a moment.

    libpng and OpenCV's FFmpeg backend print their complaints about a broken file
    straight to file descriptor 2, past Python. We do this only while probing a
    file, so that a bad file gives our one-line message and nothing else.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable fd 2 (embedded interpreters)
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def fit_within(image: UInt8Array, width: int, height: int) -> UInt8Array:
    """Scale ``image`` down (never up) to fit ``width`` x ``height``; 0 means no limit."""
    h, w = image.shape[:2]
    scale = min(width / w if width > 0 else 1.0, height / h if height > 0 else 1.0, 1.0)
    if scale >= 1.0:
        return image
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out: UInt8Array = _cv2().resize(image, size, interpolation=_cv2().INTER_AREA)
    return out


def decode_image(data: bytes, *, name: str = "image") -> UInt8Array:
    """Decode encoded image bytes to BGR uint8, or raise ``BadInputError``."""
    cv2 = _cv2()
    if not data:
        raise BadInputError(f"cannot read {name}: the file is empty")
    with _native_stderr_silenced():
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise BadInputError(
            f"cannot read {name}: not an image OpenCV can decode (corrupt or truncated?)"
        )
    out: UInt8Array = image
    return out


def read_image(path: str | os.PathLike[str]) -> UInt8Array:
    """Read an image file to BGR uint8, or raise ``BadInputError`` (missing, corrupt)."""
    p = Path(path)
    if not p.is_file():
        raise BadInputError(f"file not found: {p}")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {p}: {exc.strerror or exc}") from exc
    return decode_image(data, name=str(p))


class FrameReader(Protocol):
    """A source of BGR images. ``read`` returns ``None`` at the end."""

    @property
    def name(self) -> str: ...

    @property
    def live(self) -> bool:
        """True for a device (frames arrive in real time), False for files."""
        ...

    @property
    def fps(self) -> float:
        """Native rate: the file's or device's frames per second; 0 for stills."""
        ...

    def read(self) -> UInt8Array | None: ...

    def skip(self) -> bool:
        """Pass over one frame without decoding it; False at the end."""
        ...

    def rewind(self) -> None: ...

    def close(self) -> None: ...


class WebcamReader:
    """A camera that OpenCV opens by index (``/dev/videoN`` on Linux)."""

    live = True

    def __init__(self, index: int, *, width: int = 640, height: int = 480,
                 fps: float = 5.0) -> None:
        cv2 = _cv2()
        self.index = index
        self.name = f"camera {index}"
        self._width, self._height = width, height
        if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
            raise DeviceUnavailableError(f"no camera at index {index} (/dev/video{index} "
                                         f"does not exist): {_DEVICES_HINT}")
        self._capture = cv2.VideoCapture(index)
        if not self._capture.isOpened():
            self._capture.release()
            raise DeviceUnavailableError(
                f"camera {index} could not be opened (busy, or no permission?): {_DEVICES_HINT}"
            )
        if width > 0:
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, width)
        if height > 0:
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
        if fps > 0:
            self._capture.set(cv2.CAP_PROP_FPS, fps)
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or fps)

    def read(self) -> UInt8Array | None:
        ok, image = self._capture.read()
        if not ok or image is None:
            return None
        return fit_within(image, self._width, self._height)

    def skip(self) -> bool:
        return bool(self._capture.grab())

    def rewind(self) -> None:
        """A live camera has no beginning: nothing to do."""

    def close(self) -> None:
        self._capture.release()


class VideoFileReader:
    """A video file that OpenCV can decode (MJPG/XVID/mp4v/H.264 ... through FFmpeg)."""

    live = False

    def __init__(self, path: str | os.PathLike[str], *, width: int = 640,
                 height: int = 480) -> None:
        cv2 = _cv2()
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_file():
            raise BadInputError(f"file not found: {self.path}")
        self._width, self._height = width, height
        with _native_stderr_silenced():
            self._capture = cv2.VideoCapture(str(self.path))
            ok, first = self._capture.read() if self._capture.isOpened() else (False, None)
        if not ok or first is None:
            self._capture.release()
            raise BadInputError(f"cannot read {self.path}: not a video OpenCV can decode "
                                "(corrupt, empty, or an unsupported codec?)")
        self._pending: UInt8Array | None = first
        fps = float(self._capture.get(cv2.CAP_PROP_FPS))
        self.fps = fps if 0 < fps < 1000 else 30.0
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT))
        self.frame_count = max(count, 1)

    def read(self) -> UInt8Array | None:
        if self._pending is not None:
            image, self._pending = self._pending, None
        else:
            ok, image = self._capture.read()
            if not ok or image is None:
                return None
        return fit_within(image, self._width, self._height)

    def skip(self) -> bool:
        if self._pending is not None:
            self._pending = None
            return True
        return bool(self._capture.grab())

    def rewind(self) -> None:
        self._pending = None
        self._capture.set(_cv2().CAP_PROP_POS_FRAMES, 0)

    def close(self) -> None:
        self._capture.release()


class ImageReader:
    """One still image: a single frame (``CameraCapture(loop=True)`` repeats it)."""

    live = False
    fps = 0.0

    def __init__(self, path: str | os.PathLike[str], *, width: int = 640,
                 height: int = 480) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self._image = fit_within(read_image(self.path), width, height)
        self._done = False

    def read(self) -> UInt8Array | None:
        if self._done:
            return None
        self._done = True
        return self._image

    def skip(self) -> bool:
        was_done, self._done = self._done, True
        return not was_done

    def rewind(self) -> None:
        self._done = False

    def close(self) -> None:
        """Nothing is held open."""


class FolderReader:
    """The images of a folder in name order; unreadable files are skipped and counted."""

    live = False
    fps = 0.0

    def __init__(self, path: str | os.PathLike[str], *, width: int = 640,
                 height: int = 480) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        if not self.path.is_dir():
            raise BadInputError(f"folder not found: {self.path}")
        self.files = sorted(p for p in self.path.iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise BadInputError(f"no images in {self.path} (looked for "
                                f"{', '.join(sorted(IMAGE_SUFFIXES))})")
        self._width, self._height = width, height
        self._next = 0
        self.unreadable = 0

    def read(self) -> UInt8Array | None:
        while self._next < len(self.files):
            file = self.files[self._next]
            self._next += 1
            try:
                return fit_within(read_image(file), self._width, self._height)
            except BadInputError:
                self.unreadable += 1
        return None

    def skip(self) -> bool:
        if self._next >= len(self.files):
            return False
        self._next += 1
        return True

    def rewind(self) -> None:
        self._next = 0

    def close(self) -> None:
        """Nothing is held open."""


def open_camera(source: str, *, width: int = 640, height: int = 480,
                fps: float = 5.0) -> FrameReader:
    """The reader for a ``[camera] source``: a webcam index, a folder, an image or a video.

    Raises ``DeviceUnavailableError`` for a webcam that is not there and
    ``BadInputError`` for a missing or unreadable file.
    """
    text = source.strip()
    if text.isdigit():
        return WebcamReader(int(text), width=width, height=height, fps=fps)
    path = Path(text).expanduser()
    if not text or not path.exists():
        raise BadInputError(f"file not found: {text or '(empty camera source)'}")
    if path.is_dir():
        return FolderReader(path, width=width, height=height)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageReader(path, width=width, height=height)
    return VideoFileReader(path, width=width, height=height)


def iter_frames(reader: FrameReader, *, fps: float = 5.0, start_index: int = 0,
                step: int = 1) -> Iterator[VideoFrame]:
    """The reader's images as ``VideoFrame``s with media-time stamps, synchronously.

    A video is stamped at its own rate; stills at ``fps``. ``step`` > 1 keeps every
    ``step``-th frame (the others are skipped without decoding).
    """
    rate = reader.fps if reader.fps > 0 else fps
    index = 0
    while True:
        if index % step != 0:
            if not reader.skip():
                return
            index += 1
            continue
        image = reader.read()
        if image is None:
            return
        yield VideoFrame(timestamp_s=index / rate, image_bgr=image,
                         index=start_index + index, source=reader.name)
        index += 1


class Mailbox(Generic[T]):
    """A one-slot mailbox: ``put`` replaces what is there, ``take`` waits for something.

    It never holds more than one item, so it cannot grow; ``dropped`` counts the
    items replaced before anyone took them.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.put_count = 0
        self.taken = 0
        self.dropped = 0
        self.max_depth = 0

    def put(self, item: T) -> bool:
        """Leave ``item``; True when it replaced one that no one took (a drop)."""
        with self._cond:
            replaced = self._item is not None
            if replaced:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self.max_depth = max(self.max_depth, self.depth)
            self._cond.notify_all()
            return replaced

    def take(self, timeout_s: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout_s`` (None: for ever) or until closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed,
                                       timeout=timeout_s):
                return None
            item, self._item = self._item, None
            if item is not None:
                self.taken += 1
            return item

    def clear(self) -> None:
        with self._cond:
            self._item = None

    def close(self) -> None:
        """Wake every waiter; ``take`` returns what is left, then None without waiting."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def reopen(self) -> None:
        with self._cond:
            self._closed = False

    @property
    def depth(self) -> int:
        return 0 if self._item is None else 1


class PrivacySwitch:
    """The wearer's privacy switch: while on, the camera path is off (a runtime toggle).

    Thread-safe. ``glasses_agent.edge.perception`` checks it too: no perception runs
    and no image leaves the device while it is on.
    """

    def __init__(self, on: bool = False) -> None:
        self._cond = threading.Condition()
        self._on = on
        self.changes = 0

    @property
    def on(self) -> bool:
        return self._on

    def set(self, on: bool) -> None:
        with self._cond:
            if on != self._on:
                self._on = on
                self.changes += 1
            self._cond.notify_all()

    def toggle(self) -> bool:
        """Flip the switch; returns the new state."""
        with self._cond:
            self._on = not self._on
            self.changes += 1
            self._cond.notify_all()
            return self._on

    def wait_changed(self, changes: int, timeout_s: float) -> None:
        """Wait until ``self.changes`` differs from ``changes`` (or the timeout passes)."""
        with self._cond:
            self._cond.wait_for(lambda: self.changes != changes, timeout=timeout_s)

    def wake(self) -> None:
        """Wake waiters without changing anything (used to stop threads)."""
        with self._cond:
            self._cond.notify_all()


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureStats:
    """Counts since ``start``. ``captured`` frames entered the mailbox; each was taken,
    dropped (replaced before anyone took it), or is still waiting (``mailbox_depth``)."""

    captured: int
    delivered: int
    dropped: int
    skipped: int
    mailbox_depth: int
    max_mailbox_depth: int
    ring_frames: int
    max_ring_frames: int
    finished: bool


class CameraCapture:
    """A capture thread with a one-slot mailbox: the consumer always gets the newest frame.

    ``open_reader`` makes (and remakes, after the privacy switch released a webcam)
    the ``FrameReader``. Frames are published at ``fps``: a video file plays in
    real time at its own rate and frames in between are skipped; stills (an
    image, a folder) are shown one per tick. ``realtime=False`` reads as fast as
    it can (replays, tests). ``loop=True`` starts a file over at its end.
    """

    def __init__(
        self,
        open_reader: Callable[[], FrameReader],
        *,
        clock: Clock | None = None,
        fps: float = 5.0,
        realtime: bool = True,
        loop: bool = False,
        ring_size: int = 8,
        privacy: PrivacySwitch | None = None,
        on_frame: Callable[[VideoFrame], None] | None = None,
    ) -> None:
        if fps <= 0:
            raise BadInputError(f"camera fps must be positive, not {fps}")
        self._open_reader = open_reader
        self.clock: Clock = clock or MonotonicClock()
        self.fps = fps
        self.realtime = realtime
        self.loop = loop
        self.privacy = privacy or PrivacySwitch()
        # Told of every frame published, on the capture thread (a field-log recorder).
        self.on_frame = on_frame
        self.mailbox: Mailbox[VideoFrame] = Mailbox()
        self._ring: collections.deque[VideoFrame] = collections.deque(maxlen=max(1, ring_size))
        self._ring_lock = threading.Lock()
        self._max_ring = 0
        self._reader: FrameReader | None = None
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._index = 0
        self.skipped = 0
        self.opened_count = 0

    @classmethod
    def from_source(cls, source: str, *, width: int = 640, height: int = 480,
                    **kwargs: Any) -> CameraCapture:
        """A capture of ``open_camera(source)``; a still image repeats (``loop=True``)."""
        fps = float(kwargs.get("fps", 5.0))
        is_still = Path(source).suffix.lower() in IMAGE_SUFFIXES
        kwargs.setdefault("loop", is_still)
        return cls(lambda: open_camera(source, width=width, height=height, fps=fps), **kwargs)

    @classmethod
    def from_config(cls, camera: CameraConfig, *, clock: Clock | None = None,
                    privacy: PrivacySwitch | None = None, **kwargs: Any) -> CameraCapture:
        """The capture that ``[camera]`` describes: source, fps, width and height."""
        return cls.from_source(camera.source, width=camera.width, height=camera.height,
                               fps=camera.fps, clock=clock, privacy=privacy, **kwargs)

    # -- consumer side ---------------------------------------------------------------------
    def start(self) -> CameraCapture:
        """Open the source (errors surface here, in the caller's thread) and start capturing."""
        if self._thread is not None:
            raise GlassesError("the capture is already started")
        if not self.privacy.on:
            self._open()
        self._thread = threading.Thread(target=self._run, name="camera-capture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.privacy.wake()
        self.mailbox.close()
        if self._thread is not None:
            self._thread.join()
        self._close()

    def __enter__(self) -> CameraCapture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def latest(self, timeout_s: float | None = 1.0) -> VideoFrame | None:
        """The newest frame not yet taken, waiting up to ``timeout_s``.

        None on timeout, while the privacy switch is on, or after the end of a
        file. An error in the capture thread (a camera unplugged) is raised here.
        """
        frame = self.mailbox.take(timeout_s)
        if frame is None and self._error is not None:
            error, self._error = self._error, None
            raise error
        return frame

    def recent(self) -> list[VideoFrame]:
        """The last few frames captured, oldest first (for keyframe choice)."""
        with self._ring_lock:
            return list(self._ring)

    @property
    def finished(self) -> bool:
        """True after the end of a file (with ``loop=False``) or a capture error."""
        return self._finished.is_set()

    def stats(self) -> CaptureStats:
        return CaptureStats(
            captured=self.mailbox.put_count,
            delivered=self.mailbox.taken,
            dropped=self.mailbox.dropped,
            skipped=self.skipped,
            mailbox_depth=self.mailbox.depth,
            max_mailbox_depth=self.mailbox.max_depth,
            ring_frames=len(self._ring),
            max_ring_frames=self._max_ring,
            finished=self.finished,
        )

    # -- capture thread --------------------------------------------------------------------
    def _open(self) -> FrameReader:
        if self._reader is None:
            self._reader = self._open_reader()
            self.opened_count += 1
        return self._reader

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _go_dark(self) -> None:
        """Privacy on: release a live camera, forget every frame we hold."""
        if self._reader is not None and self._reader.live:
            self._close()
        self.mailbox.clear()
        with self._ring_lock:
            self._ring.clear()

    def _publish(self, image: UInt8Array, name: str) -> None:
        if self.privacy.on:  # switched on while this frame was read: it is not kept
            return
        frame = VideoFrame(timestamp_s=self.clock.now_s(), image_bgr=image,
                           index=self._index, source=name)
        self._index += 1
        with self._ring_lock:
            self._ring.append(frame)
            self._max_ring = max(self._max_ring, len(self._ring))
        self.mailbox.put(frame)
        if self.on_frame is not None:
            self.on_frame(frame)

    def _run(self) -> None:
        try:
            self._capture_loop()
        except BaseException as exc:  # surfaced to the consumer by latest()
            self._error = exc
        finally:
            self._finished.set()
            self.mailbox.close()

    def _capture_loop(self) -> None:
        period_s = 1.0 / self.fps
        origin_s = time.monotonic()  # real time at which media frame origin_index is due
        origin_index = 0
        tick = 0
        media_index = -1  # index of the last frame taken from a file
        last_live_s = -1e9
        while not self._stop.is_set():
            if self.privacy.on:
                changes = self.privacy.changes
                self._go_dark()
                self.privacy.wait_changed(changes, timeout_s=0.5)
                # A file resumes where it was, without catching up on the dark time.
                origin_s, origin_index, tick = time.monotonic(), media_index + 1, 0
                continue
            reader = self._open()
            if reader.live:
                image = reader.read()
                if image is None:
                    raise DeviceUnavailableError(f"{reader.name} stopped delivering frames")
                now_s = time.monotonic()
                if now_s - last_live_s < 0.9 * period_s:
                    self.skipped += 1
                    continue
                last_live_s = now_s
                self._publish(image, reader.name)
                continue
            if self.realtime:
                wait_s = origin_s + tick * period_s - time.monotonic()
                if wait_s > 0 and self._stop.wait(wait_s):
                    break
                # One frame per tick; a capture that fell behind does not burst to catch up.
                tick = max(tick + 1, int((time.monotonic() - origin_s) / period_s))
                if reader.fps > 0:  # a video plays at its own rate: skip to the frame due now
                    due = origin_index + int((time.monotonic() - origin_s) * reader.fps + 1e-6)
                    while media_index < due - 1 and reader.skip():
                        media_index += 1
                        self.skipped += 1
            image = reader.read()
            media_index += 1
            if image is None:
                if not self.loop:
                    return
                reader.rewind()
                origin_s, origin_index, tick, media_index = time.monotonic(), 0, 0, -1
                continue
            self._publish(image, reader.name)
