"""The simulated microphone: a scripted timeline (scenarios) or a real source, with the
simulator's hands on it (mute, push-to-talk).

``MicControl`` is shared with the window's keys (any thread): ``muted`` silences
the microphone (the audio keeps flowing, as zeros, as a muted microphone's
does); ``hold`` mode lets audio through only while the push-to-talk key is held;
``close_for`` silences it for a moment so that a push-to-talk turn ends at once.

``ScriptedMic`` plays a scenario: silence, with each utterance's audio placed at
its ``at_s``, and the steps tied to the microphone's time (a temple tap, a mute)
done just before the chunk at that time, so a fast run and a real-time one see
them at the same point of the audio. ``schedule`` adds an utterance "now" (plus a
delay): a step tied to what the glasses do, in a real-time run. Its time starts
once ``ready`` is set (the simulator sets it at the glasses' first look through the
camera: a wearer speaks to glasses that are already on). It ends after its last
utterance plus ``tail_s``, once nothing is left waiting.

``LiveMic`` wraps a microphone or an audio file; after a file ends it can stay
open with silence (``keep_open``), so the window keeps running until you quit.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from glasses_agent.frames import AudioChunk

__all__ = ["CHUNK_SAMPLES", "RATE_HZ", "LiveMic", "MicControl", "ScriptedMic", "TimedAction"]

RATE_HZ = 16_000
CHUNK_SAMPLES = 512  # 32 ms, what the listener takes

FloatArray = npt.NDArray[np.float32]


class MicControl:
    """Mute and push-to-talk, from any thread (see the module docstring)."""

    def __init__(self, *, hold: bool = False) -> None:
        self._lock = threading.Lock()
        self.muted = False
        self.hold = hold  # push-to-talk by holding: audio only while ``held``
        self.held = False
        self._closed_s = 0.0  # audio seconds still to silence (``close_for``)

    def set_muted(self, muted: bool) -> None:
        with self._lock:
            self.muted = muted

    def set_held(self, held: bool) -> None:
        with self._lock:
            self.held = held

    def close_for(self, seconds: float) -> None:
        """Silence the next ``seconds`` of audio (a push-to-talk turn ends there)."""
        with self._lock:
            self._closed_s = max(self._closed_s, seconds)

    @property
    def open(self) -> bool:
        """Whether what the microphone picks up reaches the glasses now."""
        with self._lock:
            return not self.muted and (self.held or not self.hold) and self._closed_s <= 0

    def apply(self, chunk: AudioChunk) -> AudioChunk:
        with self._lock:
            closed = self._closed_s > 0
            self._closed_s = max(0.0, self._closed_s - chunk.duration_s)
            silent = self.muted or closed or (self.hold and not self.held)
        if not silent:
            return chunk
        return AudioChunk(timestamp_s=chunk.timestamp_s,
                          samples=np.zeros_like(chunk.samples),
                          sample_rate_hz=chunk.sample_rate_hz)


@dataclass(slots=True)
class TimedAction:
    """A step at microphone time ``at_s`` (a tap, a mute...), done from the microphone's
    thread just before the chunk that starts at or after it."""

    at_s: float
    run: Callable[[], None]
    label: str = ""


@dataclass(slots=True)
class _Placed:
    start: int  # sample
    audio: FloatArray
    label: str = ""


@dataclass(slots=True)
class _Timeline:
    placed: list[_Placed] = field(default_factory=list)
    actions: list[TimedAction] = field(default_factory=list)


class ScriptedMic:
    """A scenario's microphone (see the module docstring). Iterate once."""

    def __init__(self, *, control: MicControl | None = None, tail_s: float = 1.5) -> None:
        self.control = control or MicControl()
        self.tail_s = tail_s
        # Set when the glasses are ready (their first look through the camera): the
        # microphone's time starts then, as a wearer speaks to glasses that are already on.
        self.ready = threading.Event()
        self.ready.set()
        self.ready_timeout_s = 15.0
        self._lock = threading.Lock()
        self._timeline = _Timeline()
        self._position = 0  # samples handed out so far
        self._waiting: set[str] = set()  # steps that will add audio when something happens
        self._stopped = threading.Event()

    def place(self, at_s: float, audio: FloatArray, label: str = "") -> None:
        """An utterance starting at microphone time ``at_s``."""
        with self._lock:
            self._timeline.placed.append(_Placed(round(at_s * RATE_HZ), audio, label))

    def at(self, action: TimedAction) -> None:
        with self._lock:
            self._timeline.actions.append(action)
            self._timeline.actions.sort(key=lambda a: a.at_s)

    def expect(self, label: str) -> None:
        """A step that is still to come (``schedule`` with this label): keep going."""
        with self._lock:
            self._waiting.add(label)

    def schedule(self, audio: FloatArray, *, delay_s: float = 0.0, label: str = "") -> float:
        """An utterance ``delay_s`` after now (the next chunk); returns its ``at_s``."""
        with self._lock:
            start = self._position + round(delay_s * RATE_HZ)
            self._timeline.placed.append(_Placed(start, audio, label))
            self._waiting.discard(label)
            return start / RATE_HZ

    @property
    def waiting(self) -> list[str]:
        """The steps still to come (their labels)."""
        with self._lock:
            return sorted(self._waiting)

    @property
    def now_s(self) -> float:
        with self._lock:
            return self._position / RATE_HZ

    def stop(self) -> None:
        self._stopped.set()

    def _end(self) -> int:
        last = max((p.start + len(p.audio) for p in self._timeline.placed), default=0)
        last_action = max((round(a.at_s * RATE_HZ) for a in self._timeline.actions), default=0)
        return max(last, last_action) + round(self.tail_s * RATE_HZ)

    def _next(self) -> tuple[AudioChunk | None, list[TimedAction]]:
        with self._lock:
            start = self._position
            if not self._waiting and start >= self._end():
                return None, []
            due = [a for a in self._timeline.actions if round(a.at_s * RATE_HZ) <= start]
            self._timeline.actions = [a for a in self._timeline.actions if a not in due]
            samples = np.zeros(CHUNK_SAMPLES, dtype=np.float32)
            end = start + CHUNK_SAMPLES
            for placed in self._timeline.placed:
                lo, hi = max(start, placed.start), min(end, placed.start + len(placed.audio))
                if lo < hi:
                    samples[lo - start:hi - start] += placed.audio[lo - placed.start:
                                                                   hi - placed.start]
            self._position = end
        chunk = AudioChunk(timestamp_s=start / RATE_HZ, samples=np.clip(samples, -1.0, 1.0),
                           sample_rate_hz=RATE_HZ)
        return chunk, due

    def __iter__(self) -> Iterator[AudioChunk]:
        self.ready.wait(self.ready_timeout_s)
        while not self._stopped.is_set():
            chunk, due = self._next()
            for action in due:
                action.run()
            if chunk is None:
                return
            yield self.control.apply(chunk)


class LiveMic:
    """A microphone or an audio file, through ``control``; ``keep_open``: after a file ends,
    silence until ``stop()``."""

    def __init__(self, source: Iterable[AudioChunk], *, control: MicControl,
                 keep_open: bool = False) -> None:
        self.source = source
        self.control = control
        self.keep_open = keep_open
        self._stopped = threading.Event()

    def stop(self) -> None:
        self._stopped.set()

    def __iter__(self) -> Iterator[AudioChunk]:
        end_s = 0.0
        for chunk in self.source:
            if self._stopped.is_set():
                return
            end_s = chunk.timestamp_s + chunk.duration_s
            yield self.control.apply(chunk)
        while self.keep_open and not self._stopped.is_set():
            silence = AudioChunk(timestamp_s=end_s, samples=np.zeros(CHUNK_SAMPLES, np.float32),
                                 sample_rate_hz=RATE_HZ)
            end_s += silence.duration_s
            yield self.control.apply(silence)
