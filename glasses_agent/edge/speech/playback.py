"""Playback: where spoken audio goes, and how much of it the wearer has heard.

A sink takes PCM (``play``) and tells, at any moment, how many samples have come
out of the speaker (``played``): that is what a barge-in reports as heard.
``stop`` drops what is not played yet (barge-in) and returns at once. ``hold``
silences the speaker at once and keeps what is not played yet; ``release`` plays it
on from where it was held (the first voiced chunk over an answer holds it, before
the barge-in rule has heard enough speech to stop it; a cough is a short gap, not a
lost answer). The sink also remembers what it played and when (``reference``), so
the echo canceller can take the assistant's own voice out of the microphone.

- ``SoundDeviceSink``: a sound card through sounddevice (PortAudio), in 20 ms
  blocks, so a stop takes effect within one block. No sound card is one clear
  line that says to pass a WAV file instead.
- ``WavFileSink``: a WAV file, for tests, CI and headless runs. With
  ``realtime`` it "plays" on the runtime's clock, as a speaker would (the file
  holds exactly what was heard, a barge-in cuts it there); without, everything
  is written at once (``glasses-agent ask --tts-out``).

Time is an argument (``now_s``) everywhere; only ``SoundDeviceSink``'s audio
callback runs on its own (PortAudio's) thread and clock.
"""

from __future__ import annotations

import collections
import threading
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from glasses_agent.errors import BadInputError, DeviceUnavailableError
from glasses_agent.frames import FloatArray

__all__ = ["AudioSink", "SilentSink", "SoundDeviceSink", "WavFileSink", "open_sink"]

_HISTORY_S = 3.0  # how long played audio is kept for the echo canceller


class AudioSink(Protocol):
    sample_rate_hz: int

    def play(self, samples: FloatArray, now_s: float) -> None:
        """Queue ``samples`` (mono float32 at ``sample_rate_hz``) after what is queued."""
        ...

    def played(self, now_s: float) -> int:
        """Samples that have come out of the speaker so far (since the sink opened)."""
        ...

    def queued(self) -> int:
        """Samples given to ``play`` so far."""
        ...

    def busy(self, now_s: float) -> bool:
        """Still playing."""
        ...

    def stop(self, now_s: float) -> int:
        """Barge-in: drop what is not played yet; the samples played so far."""
        ...

    def hold(self, now_s: float) -> None:
        """Silence the speaker now, keeping what is not played yet (``release`` or
        ``stop`` next). From any thread."""
        ...

    def release(self, now_s: float) -> None:
        """Play on what ``hold`` kept, from now. From any thread."""
        ...

    def reference(self, start_s: float, samples: int, rate_hz: int) -> FloatArray:
        """What came out of the speaker from ``start_s`` on (silence where nothing did),
        ``samples`` long at ``rate_hz``: the echo canceller's reference."""
        ...

    def close(self, now_s: float) -> None: ...


class _History:
    """Played audio with its start times (the runtime's clock), kept ``_HISTORY_S``, at the
    echo canceller's rate (16 kHz): each piece is resampled once, when it is played, so a
    window of it is an exact slice of one continuous signal."""

    def __init__(self, rate_hz: int, *, reference_rate_hz: int = 16_000) -> None:
        self.rate_hz = rate_hz
        self.reference_rate_hz = reference_rate_hz
        self._parts: collections.deque[tuple[float, FloatArray]] = collections.deque()
        self._lock = threading.Lock()

    def add(self, start_s: float, samples: FloatArray, now_s: float) -> None:
        """``samples`` play from ``start_s`` (maybe later than ``now_s``, behind what is
        queued); what finished playing ``_HISTORY_S`` before ``now_s`` is forgotten (never
        what is still to play: a long answer is queued sentence by sentence at once)."""
        if self.rate_hz != self.reference_rate_hz and len(samples):
            import soxr

            samples = np.asarray(soxr.resample(samples, self.rate_hz, self.reference_rate_hz),
                                 dtype=np.float32)
        rate = self.reference_rate_hz
        with self._lock:
            self._parts.append((start_s, samples))
            while self._parts and (self._parts[0][0] + len(self._parts[0][1]) / rate
                                   < now_s - _HISTORY_S):
                self._parts.popleft()

    def cut(self, at_s: float) -> None:
        """Nothing after ``at_s`` was played (a stop)."""
        with self._lock:
            kept: collections.deque[tuple[float, FloatArray]] = collections.deque()
            for start_s, samples in self._parts:
                if start_s >= at_s:
                    continue
                keep = int(round((at_s - start_s) * self.reference_rate_hz))
                kept.append((start_s, samples[:keep]))
            self._parts = kept

    def window(self, start_s: float, samples: int, rate_hz: int) -> FloatArray:
        if rate_hz != self.reference_rate_hz:
            raise ValueError(f"the reference is kept at {self.reference_rate_hz} Hz, not "
                             f"{rate_hz} Hz")
        out = np.zeros(samples, dtype=np.float32)
        with self._lock:
            parts = list(self._parts)
        for part_s, part in parts:
            offset = int(round((part_s - start_s) * rate_hz))
            lo, hi = max(0, offset), min(samples, offset + len(part))
            if lo < hi:
                out[lo:hi] += part[lo - offset:hi - offset]
        return out


class WavFileSink:
    """A WAV file as the speaker (see the module docstring); ``path`` None: no file at all
    (``SilentSink``), the audio still "plays" on the clock."""

    def __init__(self, path: str | Path | None, sample_rate_hz: int, *,
                 realtime: bool = True) -> None:
        import soundfile

        self.path = Path(path).expanduser() if path is not None else None
        self._file: Any = None
        if self.path is not None:
            if self.path.is_dir():
                raise BadInputError(f"{self.path} is a folder: give a .wav file to write")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._file = soundfile.SoundFile(str(self.path), "w", samplerate=sample_rate_hz,
                                                 channels=1, subtype="PCM_16", format="WAV")
            except (OSError, RuntimeError) as exc:
                raise BadInputError(f"cannot write the audio file {self.path}: {exc}") from exc
        self.sample_rate_hz = sample_rate_hz
        self.realtime = realtime
        self._segments: collections.deque[tuple[float, FloatArray]] = collections.deque()
        self._queued = 0
        self._written = 0  # samples written to the file (= heard, once time has passed)
        self._end_s = -1e18  # when the queued audio ends
        self._history = _History(sample_rate_hz)
        self._held_s: float | None = None  # silenced (``hold``) since
        self._lock = threading.RLock()  # the hearing thread holds and releases

    def play(self, samples: FloatArray, now_s: float) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        if not len(samples):
            return
        with self._lock:
            self._play(samples, now_s)

    def _play(self, samples: FloatArray, now_s: float) -> None:
        self._advance(now_s)
        if self._held_s is not None and self.realtime:
            self._segments.append((max(now_s, self._end_s), samples))  # timed on release
            self._queued += len(samples)
            return
        start_s = max(now_s, self._end_s)
        self._end_s = start_s + len(samples) / self.sample_rate_hz
        self._queued += len(samples)
        self._history.add(start_s, samples, now_s)
        if self.realtime:
            self._segments.append((start_s, samples))
        else:
            self._write(samples)

    def _write(self, samples: FloatArray) -> None:
        if self._file is not None:
            self._file.write(np.clip(samples, -1.0, 1.0))
        self._written += len(samples)

    def _advance(self, now_s: float) -> None:
        """Write what has been played by ``now_s`` (nothing plays while held)."""
        if self._held_s is not None:
            now_s = min(now_s, self._held_s)
        while self._segments:
            start_s, samples = self._segments[0]
            done = int((now_s - start_s) * self.sample_rate_hz)
            if done <= 0:
                return
            if done >= len(samples):
                self._write(samples)
                self._segments.popleft()
            else:
                self._write(samples[:done])
                self._segments[0] = (start_s + done / self.sample_rate_hz, samples[done:])
                return

    def played(self, now_s: float) -> int:
        with self._lock:
            self._advance(now_s)
            return self._written

    def queued(self) -> int:
        return self._queued

    def busy(self, now_s: float) -> bool:
        with self._lock:
            self._advance(now_s)
            return bool(self._segments)

    def stop(self, now_s: float) -> int:
        with self._lock:
            self._advance(now_s)
            self._segments.clear()
            self._history.cut(now_s)  # a hold cut it already, and nothing plays while held
            self._held_s = None
            self._queued = self._written
            self._end_s = now_s
            return self._written

    def hold(self, now_s: float) -> None:
        with self._lock:
            if self._held_s is not None or not self.realtime:
                return  # not realtime: everything is written already
            self._advance(now_s)
            self._held_s = now_s
            self._history.cut(now_s)

    def release(self, now_s: float) -> None:
        with self._lock:
            held_s, self._held_s = self._held_s, None
            if held_s is None:
                return
            self._end_s = now_s  # what was kept plays on from now, piece after piece
            kept, self._segments = list(self._segments), collections.deque()
            for _, samples in kept:
                self._segments.append((self._end_s, samples))
                self._history.add(self._end_s, samples, now_s)
                self._end_s += len(samples) / self.sample_rate_hz

    def reference(self, start_s: float, samples: int, rate_hz: int) -> FloatArray:
        return self._history.window(start_s, samples, rate_hz)

    def close(self, now_s: float) -> None:
        """Write what has been played by ``now_s`` (a realtime sink drops the rest)."""
        with self._lock:
            self._advance(now_s)
            if self._file is not None:
                self._file.close()
                self._file = None


class SilentSink(WavFileSink):
    """No speaker at all (no sound card, or ``ask`` without ``--tts-out``): the audio
    "plays" on the clock, so what was heard and a barge-in still mean something, and the
    answer's text still reaches the HUD and the events."""

    def __init__(self, sample_rate_hz: int, *, realtime: bool = True) -> None:
        super().__init__(None, sample_rate_hz, realtime=realtime)


class SoundDeviceSink:
    """A sound card, through sounddevice: 20 ms blocks from a queue, counted as played.

    ``played`` counts the samples handed to PortAudio, less its output latency;
    ``stop`` empties the queue, so the sound ends within a block and the latency.
    """

    BLOCK_S = 0.02

    def __init__(self, device: str = "", sample_rate_hz: int = 22050, *,
                 clock_now_s: Any = None) -> None:
        try:
            import sounddevice
        except OSError as exc:  # PortAudio's library is missing
            raise DeviceUnavailableError(
                f"no sound output: PortAudio is not installed ({exc}); apt-get install "
                "libportaudio2, or pass --audio-out FILE.wav") from exc
        self.sample_rate_hz = sample_rate_hz
        self._now_s = clock_now_s
        self._lock = threading.Lock()
        self._pending: collections.deque[FloatArray] = collections.deque()
        self._queued = 0
        self._handed = 0
        self._held = False
        self._history = _History(sample_rate_hz)
        chosen = _output_device(sounddevice, device)
        try:
            self._stream = sounddevice.OutputStream(
                samplerate=sample_rate_hz, channels=1, dtype="float32", device=chosen,
                blocksize=int(sample_rate_hz * self.BLOCK_S), callback=self._callback,
                latency="low",
            )
            self._stream.start()
        except Exception as exc:  # PortAudioError and friends: no device, busy, ...
            raise DeviceUnavailableError(
                f"cannot open the sound output {device or '(default)'}: {exc}; pass "
                "--audio-out FILE.wav to write the speech to a file instead") from exc
        self.latency_s = float(self._stream.latency)

    def _callback(self, out: Any, frames: int, time_info: Any, status: Any) -> None:
        filled = 0
        with self._lock:
            while filled < frames and self._pending and not self._held:
                head = self._pending[0]
                take = min(frames - filled, len(head))
                out[filled:filled + take, 0] = head[:take]
                filled += take
                if take == len(head):
                    self._pending.popleft()
                else:
                    self._pending[0] = head[take:]
            self._handed += filled
        out[filled:, 0] = 0.0

    def play(self, samples: FloatArray, now_s: float) -> None:
        samples = np.asarray(samples, dtype=np.float32)
        with self._lock:
            waiting = sum(len(p) for p in self._pending)
            self._pending.append(samples)
            self._queued += len(samples)
        self._history.add(now_s + self.latency_s + waiting / self.sample_rate_hz, samples, now_s)

    def played(self, now_s: float) -> int:
        with self._lock:
            handed = self._handed
        return max(0, handed - int(self.latency_s * self.sample_rate_hz))

    def queued(self) -> int:
        return self._queued

    def busy(self, now_s: float) -> bool:
        with self._lock:
            return bool(self._pending)

    def stop(self, now_s: float) -> int:
        with self._lock:
            self._pending.clear()
            self._queued = self._handed
            held, self._held = self._held, False
        if not held:
            self._history.cut(now_s + self.latency_s)
        return self.played(now_s)

    def hold(self, now_s: float) -> None:
        """The next block is silence (within a block and the output latency)."""
        with self._lock:
            if self._held:
                return
            self._held = True
        self._history.cut(now_s + self.latency_s)

    def release(self, now_s: float) -> None:
        with self._lock:
            if not self._held:
                return
            self._held = False
            kept = list(self._pending)
        start_s = now_s + self.latency_s
        for samples in kept:
            self._history.add(start_s, samples, now_s)
            start_s += len(samples) / self.sample_rate_hz

    def reference(self, start_s: float, samples: int, rate_hz: int) -> FloatArray:
        return self._history.window(start_s, samples, rate_hz)

    def close(self, now_s: float) -> None:
        self.stop(now_s)
        self._stream.stop()
        self._stream.close()


def _output_device(sounddevice: Any, device: str) -> int | None:
    """``""``: the default output; a number: that device; else the first whose name has it."""
    try:
        devices = list(sounddevice.query_devices())
    except Exception as exc:
        raise DeviceUnavailableError(f"cannot list sound devices: {exc}") from exc
    outputs = [i for i, d in enumerate(devices) if d.get("max_output_channels", 0) > 0]
    if not outputs:
        raise DeviceUnavailableError("no sound output device (no sound card here): pass "
                                     "--audio-out FILE.wav to write the speech to a file")
    if not device:
        return None
    if device.isdigit():
        if int(device) not in outputs:
            raise DeviceUnavailableError(f"sound output {device} does not exist (outputs: "
                                         f"{', '.join(map(str, outputs))})")
        return int(device)
    for i in outputs:
        if device.lower() in str(devices[i].get("name", "")).lower():
            return i
    raise DeviceUnavailableError(f"no sound output named like {device!r} (see "
                                 "`glasses-agent devices`)")


def open_sink(*, audio_out: str | None, device: str, sample_rate_hz: int,
              realtime: bool = True, notice: Any = None) -> AudioSink:
    """A WAV file when ``audio_out`` is given, else the sound card; no sound card is one
    line through ``notice`` (the answers are still shown) and a ``SilentSink``."""
    if audio_out:
        return WavFileSink(audio_out, sample_rate_hz, realtime=realtime)
    try:
        return SoundDeviceSink(device, sample_rate_hz)
    except DeviceUnavailableError as exc:
        if notice is not None:
            notice(f"{exc}; the answers are shown, not spoken")
        return SilentSink(sample_rate_hz, realtime=realtime)
