"""The stage runner.

A stage takes a frame and the current time and returns frames. It never reads
the clock: the runner passes ``now_s``, so tests use a ``ManualClock`` and a
replay is deterministic. A frame that a stage does not handle passes through.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from glasses_agent.clock import Clock
from glasses_agent.frames import Frame

__all__ = ["Pipeline", "Stage"]


class Stage(Protocol):
    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        """Return the frames that follow from ``frame`` (``[frame]`` to pass it on)."""
        ...


class Pipeline:
    """Stages in a row: each output frame of one stage is the input of the next."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = tuple(stages)

    def push(self, frame: Frame, now_s: float) -> list[Frame]:
        frames: list[Frame] = [frame]
        for stage in self.stages:
            frames = [out for f in frames for out in stage.process(f, now_s)]
        return frames

    def run(self, frames: Iterable[Frame], clock: Clock) -> Iterator[Frame]:
        for frame in frames:
            yield from self.push(frame, clock.now_s())
