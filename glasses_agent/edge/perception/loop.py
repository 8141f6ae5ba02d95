"""The perception loop: the newest camera frame -> a ``Perception``, as fast as the models go.

``Perceiver`` does the work for one frame (its perception steps, registered in
``perception/steps.py``: recognition on the whole frame and its centre, OCR,
faces, barcodes; each timed) and is also a stage:
``process(VideoFrame, now_s)`` returns the frame and its ``Perception``.

``PerceptionLoop`` couples it to a ``CameraCapture``: it takes the newest frame
from the capture's one-slot mailbox, perceives it, and leaves the result in a
one-slot mailbox of its own (and calls ``on_perception``). Frames that arrive
while a model runs replace each other in the capture's mailbox: nothing
queues, and the lag from capture to result stays about one frame's work.

While the privacy switch is on nothing is perceived and the last result is
forgotten.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from glasses_agent.clock import Clock
from glasses_agent.edge.perception.keyframe import choose_keyframe
from glasses_agent.edge.perception.steps import PerceptionStep, build_steps
from glasses_agent.edge.priority import lower_this_thread
from glasses_agent.edge.sources.camera import CameraCapture, Mailbox, PrivacySwitch
from glasses_agent.frames import Frame, Perception, VideoFrame

if TYPE_CHECKING:
    from glasses_agent.config import Config

__all__ = ["LoopStats", "PerceptionLoop", "Perceiver", "percentile_ms"]

UInt8Array = npt.NDArray[np.uint8]


class Perceiver:
    """What one frame shows: each perception step in turn, timed, their parts merged.

    A stage: ``process`` turns a ``VideoFrame`` into ``[frame, Perception]`` and
    passes other frames through; with the privacy switch on, a ``VideoFrame``
    goes no further (it is not even passed on).
    """

    def __init__(self, steps: Sequence[PerceptionStep], *,
                 privacy: PrivacySwitch | None = None) -> None:
        names = [step.name for step in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"perception steps must have distinct names, not {names}")
        self.steps = tuple(steps)
        self.privacy = privacy

    @classmethod
    def from_config(cls, config: Config, *, privacy: PrivacySwitch | None = None) -> Perceiver:
        """The steps registered in ``perception.steps.STEPS`` that ``[perception]`` turns on,
        their models on ``[models]``' providers and threads."""
        return cls(build_steps(config), privacy=privacy)

    def step(self, name: str) -> PerceptionStep | None:
        return next((s for s in self.steps if s.name == name), None)

    @property
    def models(self) -> dict[str, tuple[str, ...]]:
        """Step -> the registry models it runs."""
        return {step.name: step.models for step in self.steps}

    def perceive(self, frame: VideoFrame) -> Perception:
        """Everything the steps say about ``frame``; ``timings_ms`` per step."""
        timings: dict[str, float] = {}
        found: dict[str, Any] = {}
        extra: dict[str, str] = {}
        for step in self.steps:
            start = time.perf_counter()
            part = step.run(frame.image_bgr)
            timings[step.name] = _ms_since(start)
            for name in _FIELDS:
                value = getattr(part, name)
                if value is not None:
                    found[name] = value
            extra.update(part.extra)
        return Perception(timestamp_s=frame.timestamp_s, timings_ms=timings, extra=extra,
                          **found)

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if not isinstance(frame, VideoFrame):
            return [frame]
        if self.privacy is not None and self.privacy.on:
            return []
        return [frame, self.perceive(frame)]


_FIELDS = ("labels", "center_labels", "text", "faces", "barcodes")


def _ms_since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000.0, 2)


def percentile_ms(values_s: Sequence[float], q: float) -> float:
    """The ``q``-th percentile of durations in seconds, in milliseconds (0 for none)."""
    if not values_s:
        return 0.0
    return round(float(np.percentile(np.asarray(values_s), q)) * 1000.0, 2)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoopStats:
    """``lag``: from the frame's capture to its result. ``work``: the perceiver's time."""

    processed: int
    lag_ms_p50: float
    lag_ms_p95: float
    lag_ms_max: float
    work_ms_p50: float
    work_ms_p95: float
    max_results_depth: int


class PerceptionLoop:
    """Takes the newest frame, perceives it, keeps the newest result; never queues.

    ``clock`` (the capture's, by default) stamps results and measures lag;
    ``min_interval_s`` keeps the loop to a low steady rate when the models are
    faster than needed (0: as fast as they go); ``nice``, the loop thread's priority.
    """

    def __init__(
        self,
        capture: CameraCapture,
        perceiver: Perceiver,
        *,
        clock: Clock | None = None,
        on_perception: Callable[[Perception, VideoFrame], None] | None = None,
        min_interval_s: float = 0.0,
        keep_lags: int = 10_000,
        nice: int = 0,
    ) -> None:
        self.capture = capture
        self.perceiver = perceiver
        self.clock: Clock = clock or capture.clock
        self.on_perception = on_perception
        self.min_interval_s = min_interval_s
        self.nice = nice  # the loop's thread's priority (``edge.priority``; 0: as its creator)
        self.results: Mailbox[Perception] = Mailbox()
        self._lags_s: collections.deque[float] = collections.deque(maxlen=keep_lags)
        self._work_s: collections.deque[float] = collections.deque(maxlen=keep_lags)
        self.processed = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    @property
    def privacy(self) -> PrivacySwitch:
        return self.capture.privacy

    def step(self, timeout_s: float = 0.5) -> Perception | None:
        """Perceive the newest frame (waiting up to ``timeout_s`` for one); None if none came."""
        if self.privacy.on:
            self.results.clear()
            self.capture.latest(timeout_s=min(timeout_s, 0.1))  # drains; returns None
            return None
        frame = self.capture.latest(timeout_s=timeout_s)
        if frame is None or self.privacy.on:
            return None
        start = time.perf_counter()
        perception = self.perceiver.perceive(frame)
        self._work_s.append(time.perf_counter() - start)
        if self.privacy.on:  # switched on while the models ran: the result goes nowhere
            return None
        self._lags_s.append(self.clock.now_s() - frame.timestamp_s)
        self.processed += 1
        self.results.put(perception)
        if self.on_perception is not None:
            self.on_perception(perception, frame)
        return perception

    def run(self, *, duration_s: float | None = None) -> LoopStats:
        """Loop in this thread until the capture ends, ``stop()``, or ``duration_s`` passes."""
        end_s = None if duration_s is None else self.clock.now_s() + duration_s
        last_s = -1e18
        while not self._stop.is_set():
            if end_s is not None and self.clock.now_s() >= end_s:
                break
            if self.capture.finished and self.capture.mailbox.depth == 0:
                break
            wait_s = last_s + self.min_interval_s - time.monotonic()
            if wait_s > 0 and self._stop.wait(wait_s):
                break
            if self.step() is not None:
                last_s = time.monotonic()
        return self.stats()

    def start(self) -> PerceptionLoop:
        """Run the loop on its own thread (``stop()`` ends it)."""
        def target() -> None:
            lower_this_thread(self.nice)  # (0: left as it is)
            try:
                self.run()
            except BaseException as exc:  # surfaced by stop()
                self._error = exc

        self._thread = threading.Thread(target=target, name="perception-loop", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> LoopStats:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self.stats()

    def keyframe(self, now_s: float, *, max_age_s: float = 2.0) -> VideoFrame | None:
        """The frame to send with a question: the sharpest of the last few captured."""
        if self.privacy.on:
            return None
        return choose_keyframe(self.capture.recent(), now_s=now_s, max_age_s=max_age_s)

    def stats(self) -> LoopStats:
        lags = list(self._lags_s)
        work = list(self._work_s)
        return LoopStats(
            processed=self.processed,
            lag_ms_p50=percentile_ms(lags, 50),
            lag_ms_p95=percentile_ms(lags, 95),
            lag_ms_max=round(max(lags) * 1000.0, 2) if lags else 0.0,
            work_ms_p50=percentile_ms(work, 50),
            work_ms_p95=percentile_ms(work, 95),
            max_results_depth=self.results.max_depth,
        )
