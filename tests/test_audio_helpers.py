"""Real speech for the hearing tests: espeak-ng speaks, sox converts, energy tells the truth.

Speech is synthesized at test time (espeak-ng is a Debian package that
scripts/setup.sh installs) and resampled to 16 kHz by sox, an independent
resampler, so the pipeline's own soxr path is tested against something else.
Where speech is in a composed file is known twice: where it was placed, and
(tighter) where the synthesized signal has energy. The tests in this module
check those helpers themselves.
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

__all__ = ["RATE_HZ", "compose", "sox", "speak", "speech_extent", "with_noise", "write_wav"]


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise RuntimeError(f"the hearing tests need {tool} (apt-get install {tool}; "
                           "scripts/setup.sh installs it)")
    return path


@functools.cache
def _speak(text: str, voice: str, speed_wpm: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        out = Path(tmp) / "out.wav"
        subprocess.run([_need("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-w", str(raw),
                        text], check=True, capture_output=True)
        subprocess.run([_need("sox"), str(raw), "-r", str(RATE_HZ), "-c", "1", "-b", "16",
                        str(out)], check=True, capture_output=True)
        return out.read_bytes()


def speak(text: str, voice: str = "en-us", speed_wpm: int = 160) -> Audio:
    """``text`` spoken by espeak-ng, 16 kHz mono float32, with espeak's own short edges."""
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


def test_speech_extent_finds_placed_speech() -> None:
    speech = speak("what am I looking at")
    start_s, end_s = speech_extent(speech)
    assert 0.3 < end_s - start_s < len(speech) / RATE_HZ + 0.01
    audio, spans = compose([1.0, speech, 0.5])
    (placed,) = spans
    assert placed[0] == 1.0 + start_s
    assert placed[1] == 1.0 + end_s
    assert len(audio) == round(1.5 * RATE_HZ) + len(speech)


def test_noise_has_the_requested_level() -> None:
    speech = speak("hello there")
    noisy = with_noise(speech, snr_db=10.0)
    noise = noisy - speech
    voiced = speech[np.abs(speech) > 1e-4]
    snr = 10 * np.log10((voiced.astype(np.float64) ** 2).mean() / (noise ** 2).mean())
    assert abs(snr - 10.0) < 0.5
