"""Clocks. Stages never read the time themselves: the runtime passes ``now_s``.

``MonotonicClock`` is the live clock; ``ManualClock`` is for tests and replay,
where time moves only when told to.
"""

from __future__ import annotations

import time
from typing import Protocol

__all__ = ["Clock", "ManualClock", "MonotonicClock"]


class Clock(Protocol):
    """Something that tells the time in seconds (an arbitrary, monotonic epoch)."""

    def now_s(self) -> float: ...


class MonotonicClock:
    """The live clock: ``time.monotonic()``."""

    def now_s(self) -> float:
        return time.monotonic()


class ManualClock:
    """A clock that moves only when ``advance`` or ``set`` is called."""

    def __init__(self, start_s: float = 0.0) -> None:
        self._now_s = start_s

    def now_s(self) -> float:
        return self._now_s

    def advance(self, seconds: float) -> float:
        if seconds < 0:
            raise ValueError(f"a clock cannot go back ({seconds} s)")
        self._now_s += seconds
        return self._now_s

    def set(self, now_s: float) -> None:
        if now_s < self._now_s:
            raise ValueError(f"a clock cannot go back ({self._now_s} -> {now_s} s)")
        self._now_s = now_s
