"""The runtime's eyes: the camera, perception at a low steady rate and on demand, and the
keyframe that may leave the glasses.

``Eyes`` runs a ``CameraCapture`` (latest frame wins) and a ``PerceptionLoop``
at ``perceive_every_s``, so a question finds a recent ``Perception`` waiting;
``perception_for(now_s)`` perceives the newest frame at once when the last result
is older than ``fresh_s``. ``look_now()`` perceives the newest frame and makes its
outgoing JPEG ahead of the question (the runtime calls it when the wake phrase is
heard: while the wearer is still asking, both are made). Candidate keyframes are
the capture's recent frames, described to the router cheaply (time, sharpness);
only the one the router picks is blurred and encoded (``outgoing_jpeg``: faces blurred, checked by a
second detector; refused while the privacy switch is on).

All of it runs at a lower CPU priority than hearing (``edge.priority``): the loop's
thread at ``BACKGROUND_NICE``, and ``run(work)``, the eyes' own threads for the look,
perception on demand and the JPEGs, at ``LOOK_NICE`` (a look can be what a question
about the view waits for).

The capture LED is on exactly while the capture runs, which is when a frame can
be kept or sent: with the privacy switch on the capture is off, nothing is
perceived and ``outgoing_jpeg`` refuses, so no frame leaves with the LED off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from glasses_agent.clock import Clock
from glasses_agent.edge.events import Tap
from glasses_agent.edge.perception.keyframe import sharpness
from glasses_agent.edge.perception.loop import Perceiver, PerceptionLoop
from glasses_agent.edge.perception.privacy import FaceRedactor, PrivacyOnError
from glasses_agent.edge.priority import BACKGROUND_NICE, LOOK_NICE, lower_this_thread
from glasses_agent.edge.router import Keyframe
from glasses_agent.edge.sources.camera import CameraCapture, PrivacySwitch
from glasses_agent.frames import Perception, VideoFrame

__all__ = ["Eyes"]

T = TypeVar("T")


class Eyes:
    """See the module docstring. ``start()``/``stop()``; thread-safe readers."""

    def __init__(
        self,
        capture: CameraCapture,
        perceiver: Perceiver,
        redactor: FaceRedactor,
        *,
        clock: Clock,
        perceive_every_s: float = 1.0,
        fresh_s: float = 1.5,
        on_perception: Callable[[Perception], None] | None = None,
        tap: Tap | None = None,
    ) -> None:
        self.capture = capture
        self.perceiver = perceiver
        self.redactor = redactor
        self.clock = clock
        self.fresh_s = fresh_s
        self._on_perception = on_perception
        self.tap = tap
        self._lock = threading.Lock()
        self._latest: tuple[Perception, VideoFrame] | None = None
        self._ready: tuple[int, bytes] | None = None  # look_now's frame and its JPEG
        self.loop = PerceptionLoop(capture, perceiver, clock=clock,
                                   on_perception=self._perceived,
                                   min_interval_s=perceive_every_s, nice=BACKGROUND_NICE)
        # the look, perception on demand and the outgoing JPEGs: threads below hearing
        # and above the steady loop (``edge.priority``), off the event loop
        self.executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="eyes", initializer=lower_this_thread,
            initargs=(LOOK_NICE,))

    @property
    def privacy(self) -> PrivacySwitch:
        return self.capture.privacy

    @property
    def led_on(self) -> bool:
        """The capture LED: on while frames can be kept or sent."""
        return not self.privacy.on

    def start(self) -> Eyes:
        self.capture.start()
        self.loop.start()
        return self

    def stop(self) -> None:
        self.loop.stop()
        self.capture.stop()
        self.executor.shutdown(wait=True, cancel_futures=True)

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """``work(*args)`` on the eyes' threads, awaited from the event loop."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    def set_privacy(self, on: bool) -> None:
        self.privacy.set(on)
        if on:
            with self._lock:
                self._latest = None
                self._ready = None

    def _perceived(self, perception: Perception, frame: VideoFrame) -> None:
        with self._lock:
            self._latest = (perception, frame)
        if self.tap is not None:
            self.tap.perceived(perception, frame)
        if self._on_perception is not None:
            self._on_perception(perception)

    def latest(self) -> tuple[Perception, VideoFrame] | None:
        with self._lock:
            return self._latest

    def perception_for(self, now_s: float) -> Perception | None:
        """A perception no older than ``fresh_s``: the loop's, or the newest frame's now
        (blocking: run it off the event loop). None in privacy mode or with no frame."""
        if self.privacy.on:
            return None
        latest = self.latest()
        if latest is not None and now_s - latest[0].timestamp_s <= self.fresh_s:
            return latest[0]
        frame = self.capture.latest(timeout_s=0.5)
        if frame is None:
            frame = latest[1] if latest is not None else None
        if frame is None or self.privacy.on:
            return None
        perception = self.perceiver.perceive(frame)
        self._perceived(perception, frame)
        return perception

    def look_now(self) -> tuple[Perception, VideoFrame] | None:
        """Perceive the newest frame now and make its outgoing JPEG (blocking: run it off
        the event loop); ``outgoing_jpeg`` of that frame then returns at once. None in
        privacy mode or with no frame."""
        if self.privacy.on:
            return None
        frame = self.capture.latest(timeout_s=0.5)
        if frame is None or self.privacy.on:
            return None
        perception = self.perceiver.perceive(frame)
        self._perceived(perception, frame)
        try:  # perception's face boxes save the primary detection; the check runs anyway
            jpeg = self.redactor.outgoing_jpeg(frame.image_bgr, faces=perception.faces).jpeg
        except PrivacyOnError:
            return None
        with self._lock:
            if not self.privacy.on:
                self._ready = (frame.index, jpeg)
        return perception, frame

    def keyframe_candidates(self) -> list[Keyframe]:
        """The recent frames, as the router weighs them (no JPEG made yet)."""
        if self.privacy.on:
            return []
        return [Keyframe(timestamp_s=f.timestamp_s, jpeg=b"", sharpness=sharpness(f.image_bgr),
                         index=f.index) for f in self.capture.recent()]

    def newest_index(self) -> int | None:
        """The index of the newest frame kept (the one a fresh perception would look at)."""
        if self.privacy.on:
            return None
        frames = self.capture.recent()
        return frames[-1].index if frames else None

    def outgoing_jpeg(self, index: int) -> bytes | None:
        """The JPEG of recent frame ``index`` as it may leave: faces blurred and checked
        (blocking). None if that frame is gone; ``PrivacyOnError`` in privacy mode."""
        if self.privacy.on:
            raise PrivacyOnError("the privacy switch is on: no image leaves the device")
        with self._lock:
            ready = self._ready
        if ready is not None and ready[0] == index:
            return ready[1]  # made by look_now
        frame = next((f for f in self.capture.recent() if f.index == index), None)
        if frame is None:
            latest = self.latest()
            frame = latest[1] if latest is not None and latest[1].index == index else None
        if frame is None:
            return None
        return self.redactor.outgoing_jpeg(frame.image_bgr).jpeg
