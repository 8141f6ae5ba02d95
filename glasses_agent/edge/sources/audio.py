"""Audio sources: a microphone (sounddevice) or a file (WAV, FLAC, ... via soundfile).

Both yield the same stream of ``AudioChunk`` frames: mono float32 at 16 kHz
(``TARGET_RATE_HZ``), ``chunk_samples`` long (the last chunk of a file may be
shorter), each stamped with the time of its first sample. Files of any sample
rate, bit depth and channel count are mixed down to mono (channel mean) and
resampled with soxr (a proper band-limited resampler, streaming, so a long file
is never held in memory whole).

Bad files are refused up front with a one-line ``BadInputError``: missing,
empty, truncated (a WAV whose header announces more audio than it holds: the
kind of file a recorder leaves when it dies), or not audio. A machine with no
sound card gets ``DeviceUnavailableError``, never a PortAudio traceback.
"""

from __future__ import annotations

import contextlib
import queue
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import numpy as np

from glasses_agent.clock import Clock, MonotonicClock
from glasses_agent.errors import BadInputError, DeviceUnavailableError
from glasses_agent.frames import AudioChunk, FloatArray

__all__ = [
    "CHUNK_SAMPLES",
    "MAX_RATE_HZ",
    "MIN_RATE_HZ",
    "TARGET_RATE_HZ",
    "AudioFileInfo",
    "AudioSource",
    "FileAudioSource",
    "MicrophoneSource",
    "Resampler",
    "pick_input_device",
    "probe_audio_file",
    "read_audio_file",
    "to_mono",
]

TARGET_RATE_HZ = 16_000
# 32 ms at 16 kHz: the chunk Silero VAD takes.
CHUNK_SAMPLES = 512
_READ_BLOCK_FRAMES = 32_768
# WAV data sizes that mean "length unknown" (a recorder writing to a pipe).
_UNKNOWN_WAV_SIZES = (0, 0xFFFFFFFF)
# WAV format tags whose frames are exactly channels x whole bytes per sample:
# PCM, IEEE float, A-law, mu-law, extensible.
_PCM_WAV_TAGS = (0x0001, 0x0003, 0x0006, 0x0007, 0xFFFE)
# Sample rates outside these are a damaged header, not audio: below 1 kHz nothing
# of speech is left, and resampling 1 Hz to 16 kHz would make 16,000 samples of each.
MIN_RATE_HZ = 1_000
MAX_RATE_HZ = 768_000


class AudioSource(Protocol):
    """Something that yields ``AudioChunk`` frames; close it when done."""

    def __iter__(self) -> Iterator[AudioChunk]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioFileInfo:
    path: Path
    sample_rate_hz: int
    channels: int
    frames: int
    format: str
    subtype: str

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate_hz


def to_mono(block: Any) -> FloatArray:
    """Frames x channels (or 1-D) float audio to a 1-D float32 channel mean."""
    array = np.asarray(block, dtype=np.float32)
    if array.ndim == 2:
        array = array.mean(axis=1, dtype=np.float32) if array.shape[1] > 1 else array[:, 0]
    return np.ascontiguousarray(array, dtype=np.float32)


class Resampler:
    """Streaming mono resampler (soxr, high quality); a no-op at equal rates."""

    def __init__(self, in_rate_hz: int, out_rate_hz: int = TARGET_RATE_HZ) -> None:
        self.in_rate_hz = in_rate_hz
        self.out_rate_hz = out_rate_hz
        self._stream: Any = None
        if in_rate_hz != out_rate_hz:
            try:
                import soxr
            except ImportError as exc:  # pragma: no cover - soxr is a core dependency
                raise BadInputError("resampling needs soxr: pip install soxr") from exc
            self._stream = soxr.ResampleStream(in_rate_hz, out_rate_hz, 1, dtype="float32",
                                               quality="HQ")

    def push(self, samples: FloatArray, *, last: bool = False) -> FloatArray:
        if self._stream is None:
            return samples
        out = self._stream.resample_chunk(samples, last=last)
        return np.ascontiguousarray(out, dtype=np.float32)


def _wav_problem(path: Path, file_size: int) -> str:
    """A reason if ``path`` is a RIFF/WAVE file with a bad header or cut short, else "".

    libsndfile is lenient: it reads the part of a truncated WAV that is there
    (the kind of file a recorder leaves when it dies), and it decodes a ``fmt ``
    chunk whose fields contradict each other (7-bit samples, 300 channels in a
    2-byte frame) as noise. Both are refused here.
    """
    with path.open("rb") as f:
        header = f.read(12)
        if len(header) < 12 or header[:4] not in (b"RIFF", b"RIFX") or header[8:12] != b"WAVE":
            return ""
        endian = "<" if header[:4] == b"RIFF" else ">"
        offset = 12
        while offset + 8 <= file_size:
            f.seek(offset)
            chunk_id, size = struct.unpack(endian + "4sI", f.read(8))
            if chunk_id == b"fmt " and size >= 16:
                tag, channels, _, _, block_align, bits = struct.unpack(endian + "HHIIHH",
                                                                       f.read(16))
                if tag in _PCM_WAV_TAGS and (
                    bits == 0 or block_align != channels * ((bits + 7) // 8)
                ):
                    return (f"has a bad WAV header: {channels} channel(s) of {bits}-bit "
                            f"samples do not fit its {block_align}-byte frames")
            if chunk_id == b"data":
                available = file_size - offset - 8
                if size not in _UNKNOWN_WAV_SIZES and size > available:
                    return (f"is a truncated WAV file: its header announces {size} bytes of "
                            f"audio but only {available} are there")
                return ""
            offset += 8 + size + (size & 1)
        return "is a truncated WAV file: it ends before its audio data"


def probe_audio_file(path: str | Path) -> AudioFileInfo:
    """Check that ``path`` is a readable, non-empty, complete audio file; say why not."""
    p = Path(path)
    if not p.exists():
        raise BadInputError(f"{p}: no such file")
    if p.is_dir():
        raise BadInputError(f"{p} is a directory, not an audio file")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise BadInputError(f"{p} cannot be read: {exc.strerror}") from exc
    if size == 0:
        raise BadInputError(f"{p} is empty (0 bytes)")
    import soundfile

    try:
        info = soundfile.info(str(p))
    except soundfile.SoundFileError as exc:
        detail = str(exc).split(":", 1)[-1].strip().rstrip(".")
        try:
            head = p.read_bytes()[:4]
        except OSError:
            head = b""
        if head in (b"RIFF", b"RIFX"):
            raise BadInputError(f"{p} is a damaged or truncated WAV file ({detail})") from exc
        raise BadInputError(
            f"{p} is not an audio file that can be read (WAV, FLAC, OGG, ...): {detail}"
        ) from exc
    problem = _wav_problem(p, size)
    if problem:
        raise BadInputError(f"{p} {problem}")
    if info.frames <= 0:
        raise BadInputError(f"{p} holds no audio samples (an empty {info.format} file)")
    if info.channels <= 0 or not MIN_RATE_HZ <= info.samplerate <= MAX_RATE_HZ:
        raise BadInputError(
            f"{p} has a bad header: {info.samplerate} Hz, {info.channels} channel(s) "
            f"(sample rates from {MIN_RATE_HZ} to {MAX_RATE_HZ} Hz are read)"
        )
    return AudioFileInfo(
        path=p, sample_rate_hz=int(info.samplerate), channels=int(info.channels),
        frames=int(info.frames), format=str(info.format), subtype=str(info.subtype),
    )


class FileAudioSource:
    """The chunks of an audio file, mono at 16 kHz, timestamped from ``start_s``.

    Construction checks the file (``probe_audio_file``); iteration streams it.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        chunk_samples: int = CHUNK_SAMPLES,
        start_s: float = 0.0,
        sample_rate_hz: int = TARGET_RATE_HZ,
    ) -> None:
        if chunk_samples <= 0:
            raise ValueError(f"chunk_samples must be positive, not {chunk_samples}")
        self.info = probe_audio_file(path)
        self.chunk_samples = chunk_samples
        self.start_s = start_s
        self.sample_rate_hz = sample_rate_hz

    @property
    def duration_s(self) -> float:
        return self.info.duration_s

    def __iter__(self) -> Iterator[AudioChunk]:
        import soundfile

        resampler = Resampler(self.info.sample_rate_hz, self.sample_rate_hz)
        pending = np.zeros(0, dtype=np.float32)
        emitted = 0
        n = self.chunk_samples
        p = self.info.path
        try:
            with soundfile.SoundFile(str(p)) as f:
                while True:
                    block = f.read(_READ_BLOCK_FRAMES, dtype="float32", always_2d=True)
                    last = len(block) < _READ_BLOCK_FRAMES
                    out = resampler.push(to_mono(block), last=last)
                    pending = np.concatenate([pending, out]) if len(pending) else out
                    while len(pending) >= n or (last and len(pending)):
                        chunk, pending = pending[:n], pending[n:]
                        yield AudioChunk(
                            timestamp_s=self.start_s + emitted / self.sample_rate_hz,
                            samples=np.ascontiguousarray(chunk),
                            sample_rate_hz=self.sample_rate_hz,
                        )
                        emitted += len(chunk)
                    if last:
                        return
        except soundfile.SoundFileError as exc:
            at_s = emitted / self.sample_rate_hz
            detail = str(exc).split(":", 1)[-1].strip().rstrip(".")
            raise BadInputError(f"{p} is damaged or truncated: reading stopped at {at_s:.2f} s "
                                f"({detail})") from exc

    def close(self) -> None:
        """Nothing to release: the file is open only while iterating."""


def read_audio_file(path: str | Path, *, sample_rate_hz: int = TARGET_RATE_HZ) -> FloatArray:
    """The whole file as one mono float32 array at ``sample_rate_hz`` (checked like a source)."""
    source = FileAudioSource(path, chunk_samples=_READ_BLOCK_FRAMES, sample_rate_hz=sample_rate_hz)
    chunks = [chunk.samples for chunk in source]
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)


# --- microphone -------------------------------------------------------------------------


def _sounddevice() -> Any:
    try:
        import sounddevice
    except ImportError as exc:
        raise DeviceUnavailableError(
            "the microphone needs sounddevice: pip install sounddevice"
        ) from exc
    except OSError as exc:  # sounddevice raises OSError when libportaudio is missing
        raise DeviceUnavailableError(
            f"the microphone needs PortAudio ({exc}): apt-get install libportaudio2"
        ) from exc
    return sounddevice


def pick_input_device(devices: Sequence[Mapping[str, Any]], wanted: str) -> int | None:
    """The index of the input device ``wanted`` names: "" = the default (None), a number =
    that index, else the first device whose name contains ``wanted`` (case-insensitive).

    ``devices`` are ``sounddevice.query_devices()`` entries (``name``, ``max_input_channels``).
    """
    inputs = [(i, d) for i, d in enumerate(devices) if int(d.get("max_input_channels", 0)) > 0]
    if not inputs:
        raise DeviceUnavailableError(
            "no audio input device found (no sound card on this machine?); see "
            "`glasses-agent devices`, or give an audio file instead "
            "(`glasses-agent transcribe PATH`)"
        )
    names = ", ".join(f"{i}: {d['name']}" for i, d in inputs)
    wanted = wanted.strip()
    if not wanted:
        return None
    if wanted.isdigit():
        index = int(wanted)
        if any(i == index for i, _ in inputs):
            return index
        raise DeviceUnavailableError(f"audio device {index} is not an input (inputs: {names})")
    lowered = wanted.lower()
    for i, d in inputs:
        if str(d["name"]).lower() == lowered:
            return i
    for i, d in inputs:
        if lowered in str(d["name"]).lower():
            return i
    raise DeviceUnavailableError(f"no audio input named like {wanted!r} (inputs: {names})")


class MicrophoneSource:
    """Live audio from a sounddevice input, as 16 kHz mono ``AudioChunk`` frames.

    The PortAudio callback only copies samples into an unbounded queue (audio is
    never dropped); iteration does the mixing, resampling and chunking. Chunk
    timestamps count samples from the clock's time at the first callback, so they
    do not drift with scheduling jitter. Use as a context manager.
    """

    def __init__(
        self,
        device: str = "",
        *,
        chunk_samples: int = CHUNK_SAMPLES,
        sample_rate_hz: int = TARGET_RATE_HZ,
        clock: Clock | None = None,
        read_timeout_s: float = 1.0,
    ) -> None:
        self.device_spec = device
        self.chunk_samples = chunk_samples
        self.sample_rate_hz = sample_rate_hz
        self.clock: Clock = clock or MonotonicClock()
        self.read_timeout_s = read_timeout_s
        self.device_index: int | None = None
        self.device_rate_hz = sample_rate_hz
        self.overflows = 0
        self._queue: queue.Queue[FloatArray] = queue.Queue()
        self._stream: Any = None
        self._start_s: float | None = None
        self._closed = threading.Event()

    def open(self) -> MicrophoneSource:
        sd = _sounddevice()
        try:
            devices = list(sd.query_devices())
        except sd.PortAudioError as exc:
            raise DeviceUnavailableError(f"audio devices cannot be listed: {exc}") from exc
        self.device_index = pick_input_device(devices, self.device_spec)
        try:
            sd.check_input_settings(device=self.device_index, channels=1,
                                    samplerate=self.sample_rate_hz, dtype="float32")
            self.device_rate_hz = self.sample_rate_hz
        except (sd.PortAudioError, ValueError):
            info = sd.query_devices(self.device_index, "input")
            self.device_rate_hz = int(info["default_samplerate"])
        blocksize = max(1, round(self.chunk_samples * self.device_rate_hz / self.sample_rate_hz))
        try:
            self._stream = sd.InputStream(
                device=self.device_index, channels=1, samplerate=self.device_rate_hz,
                dtype="float32", blocksize=blocksize, callback=self._callback,
            )
            self._stream.start()
        except (sd.PortAudioError, ValueError) as exc:
            self._stream = None
            raise DeviceUnavailableError(
                f"the microphone {self.device_spec or '(default)'} cannot be opened: {exc}"
            ) from exc
        return self

    def _callback(self, indata: Any, frames: int, time_info: Any, status: Any) -> None:
        if status and status.input_overflow:
            self.overflows += 1
        if self._start_s is None:
            self._start_s = self.clock.now_s() - frames / self.device_rate_hz
        self._queue.put(to_mono(indata).copy())

    def __enter__(self) -> MicrophoneSource:
        return self.open() if self._stream is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> Iterator[AudioChunk]:
        if self._stream is None:
            self.open()
        resampler = Resampler(self.device_rate_hz, self.sample_rate_hz)
        pending = np.zeros(0, dtype=np.float32)
        emitted = 0
        while not self._closed.is_set():
            try:
                block = self._queue.get(timeout=self.read_timeout_s)
            except queue.Empty:
                continue
            pending = np.concatenate([pending, resampler.push(block)])
            while len(pending) >= self.chunk_samples:
                chunk, pending = pending[: self.chunk_samples], pending[self.chunk_samples:]
                start_s = self._start_s if self._start_s is not None else self.clock.now_s()
                yield AudioChunk(timestamp_s=start_s + emitted / self.sample_rate_hz,
                                 samples=np.ascontiguousarray(chunk),
                                 sample_rate_hz=self.sample_rate_hz)
                emitted += len(chunk)

    def close(self) -> None:
        self._closed.set()
        if self._stream is not None:
            with contextlib.suppress(Exception):  # PortAudio may already be gone
                self._stream.stop()
                self._stream.close()
            self._stream = None
