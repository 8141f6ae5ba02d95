"""Real speech for the tests and the benchmarks: espeak-ng or flite speaks, sox converts,
energy tells the truth.

Speech is synthesized at test time (espeak-ng is a Debian package that
scripts/setup.sh installs) and resampled to 16 kHz by sox, an independent
resampler, so the pipeline's own soxr path is tested against something else.
Where speech is in a composed file is known twice: where it was placed, and
(tighter) where the synthesized signal has energy. tests/test_support.py checks
these helpers themselves.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import soundfile

RATE_HZ = 16_000
Audio = npt.NDArray[np.float32]

__all__ = ["FLITE_VOICES", "RATE_HZ", "compose", "sox", "speak", "speech_extent", "trimmed",
           "with_noise", "write_wav"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"the hearing tests need {tool} (apt-get install {tool}; "
                           "scripts/setup.sh installs it)")
    return path


# flite's voices; any other name is an espeak-ng voice.
FLITE_VOICES = ("slt", "rms", "awb", "kal")


@functools.cache
def _speak(text: str, voice: str, speed_wpm: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        out = Path(tmp) / "out.wav"
        if voice in FLITE_VOICES:
            subprocess.run([_need("flite"), "-voice", voice, "-t", text, "-o", str(raw)],
                           check=True, capture_output=True)
        else:
            subprocess.run([_need("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-w",
                            str(raw), text], check=True, capture_output=True)
        subprocess.run([_need("sox"), str(raw), "-r", str(RATE_HZ), "-c", "1", "-b", "16",
                        str(out)], check=True, capture_output=True)
        return out.read_bytes()


def speak(text: str, voice: str = "en-us", speed_wpm: int = 160) -> Audio:
    """``text`` spoken by espeak-ng (or flite, for its voices ``FLITE_VOICES``), 16 kHz mono
    float32, with the synthesizer's own short edges. (flite has no rate setting.)"""
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        f.write(_speak(text, voice, speed_wpm))
        f.flush()
        audio, rate = soundfile.read(f.name, dtype="float32")
    assert rate == RATE_HZ
    return np.asarray(audio, dtype=np.float32)


def speech_extent(audio: Audio, *, frame_s: float = 0.01, below_peak_db: float = 35.0,
                  ) -> tuple[float, float]:
    """(first, last) time in seconds where 10 ms frames are within 35 dB of the loudest."""
    n = int(frame_s * RATE_HZ)
    frames = audio[: len(audio) // n * n].reshape(-1, n)
    rms_db = 20 * np.log10(np.sqrt((frames.astype(np.float64) ** 2).mean(axis=1)) + 1e-10)
    active = np.flatnonzero(rms_db > rms_db.max() - below_peak_db)
    return float(active[0] * frame_s), float((active[-1] + 1) * frame_s)


def trimmed(text: str, voice: str = "en-us") -> Audio:
    """``text`` spoken (``speak``) without the synthesizer's own silent edges
    (``speech_extent``): silences composed around it are then the only ones."""
    audio = speak(text, voice)
    start_s, end_s = speech_extent(audio)
    return audio[round(start_s * RATE_HZ):round(end_s * RATE_HZ)]


def compose(parts: Sequence[float | Audio]) -> tuple[Audio, list[tuple[float, float]]]:
    """Silences (a float: seconds) and speech (arrays) end to end; the speech spans (truth)."""
    pieces: list[Audio] = []
    spans: list[tuple[float, float]] = []
    at = 0
    for part in parts:
        if isinstance(part, float | int):
            piece = np.zeros(round(float(part) * RATE_HZ), dtype=np.float32)
        else:
            piece = part
            start_s, end_s = speech_extent(piece)
            spans.append((at / RATE_HZ + start_s, at / RATE_HZ + end_s))
        pieces.append(piece)
        at += len(piece)
    return np.concatenate(pieces), spans


def with_noise(audio: Audio, snr_db: float, seed: int = 7) -> Audio:
    """White noise added over the whole file at ``snr_db`` against the speech's power."""
    rng = np.random.default_rng(seed)
    voiced = audio[np.abs(audio) > 1e-4]
    signal_power = float((voiced.astype(np.float64) ** 2).mean())
    noise = rng.normal(0.0, np.sqrt(signal_power / 10 ** (snr_db / 10)), len(audio))
    return np.clip(audio + noise, -1.0, 1.0).astype(np.float32)


def write_wav(path: Path, audio: Audio, rate_hz: int = RATE_HZ, subtype: str = "PCM_16") -> Path:
    soundfile.write(str(path), audio, rate_hz, subtype=subtype)
    return path


def sox(src: Path, dst: Path, *args: str) -> Path:
    """Convert with sox: ``sox(src, dst, "-r", "48000", "-c", "2", "-b", "8")``."""
    subprocess.run([_need("sox"), str(src), *args, str(dst)], check=True, capture_output=True)
    return dst


def barge_ins(mic: Audio, played: Audio, *, chunk: int = 512) -> list[float]:
    """Where (seconds) the runtime's barge-in rule fires on ``mic`` while ``played`` plays:
    the real echo stage, VAD and ``BargeInWatch``, chunk by chunk as the hearing thread
    runs them (16 kHz, ``played`` aligned with ``mic``)."""
    return _watch(mic, played, chunk=chunk)[0]


def holds(mic: Audio, played: Audio, *, chunk: int = 512) -> list[tuple[float, bool]]:
    """Where (seconds, the end of the chunk that decides it) the hearing thread would hold
    the answer on ``mic`` while ``played`` plays: each chunk that starts a run of chunks
    the ``BargeInWatch`` calls speech or a sound's onset; True where the onset held it
    (the echo canceller's score alone, before the VAD)."""
    return _watch(mic, played, chunk=chunk)[1]


def _watch(mic: Audio, played: Audio, *, chunk: int
           ) -> tuple[list[float], list[tuple[float, bool]]]:
    from glasses_agent.edge.hearing import BargeInWatch, EchoStage
    from glasses_agent.edge.speech.vad import VadStage
    from glasses_agent.frames import AudioChunk

    def reference(start_s: float, samples: int) -> np.ndarray:
        i = int(round(start_s * RATE_HZ))
        out = np.zeros(samples, dtype=np.float32)
        part = played[i:i + samples]
        out[:len(part)] = part
        return out

    echo = EchoStage(reference)
    watch = BargeInWatch(echo)
    fired: list[float] = []
    held: list[tuple[float, bool]] = []
    was_holding = False

    def on_probability(start_s: float, probability: float) -> None:
        nonlocal was_holding
        began = watch.update(start_s, probability)
        holding = watch.voiced or watch.onset
        if holding and not was_holding:
            held.append((start_s + BargeInWatch.CHUNK_S, watch.onset and not watch.voiced))
        was_holding = holding
        if began is not None:
            fired.append(began)
            watch.reset()  # keep watching: count every barge-in, not only the first

    vad = VadStage.from_config()
    vad.on_probability = on_probability
    for i in range(0, len(mic) - chunk + 1, chunk):
        audio = AudioChunk(timestamp_s=i / RATE_HZ, samples=mic[i:i + chunk].astype(np.float32),
                           sample_rate_hz=RATE_HZ)
        for frame in echo.process(audio, (i + chunk) / RATE_HZ):
            vad.process(frame, (i + chunk) / RATE_HZ)
    return fired, held
