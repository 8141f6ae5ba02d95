"""The wearer's voice in a scenario: text spoken by espeak-ng or flite, 16 kHz mono.

A scenario's utterances are synthesized when it runs (nothing big is committed):
espeak-ng's voices and variants (``"en-us"``, ``"en-gb"``, ``"en-us+f3"``,
``"en-gb-x-rp+m4"`` ...) and flite's four English voices (``"flite:slt"``,
``"flite:rms"``, ``"flite:awb"``, ``"flite:kal"``). Both are other engines than the
glasses' own TTS, run as separate programs (Debian ``espeak-ng`` and ``flite``,
which ``scripts/setup.sh`` installs). Their output is resampled to the 16 kHz the
glasses hear with soxr. Results are cached per process (the same sentence in the
same voice is made once).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import numpy.typing as npt

from glasses_agent.errors import BadInputError, DeviceUnavailableError

__all__ = ["FLITE_VOICES", "RATE_HZ", "check_voice", "synthesize"]

RATE_HZ = 16_000
FLITE_VOICES = ("slt", "rms", "awb", "kal")
_FLITE = "flite:"

FloatArray = npt.NDArray[np.float32]


def _program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DeviceUnavailableError(
            f"speaking a scenario's text needs {name} (apt-get install {name}; "
            "scripts/setup.sh installs it), or give the utterance as a WAV file (wav = ...)")
    return path


@functools.cache
def _espeak_voices() -> frozenset[str]:
    out = subprocess.run([_program("espeak-ng"), "--voices"], capture_output=True, text=True,
                         check=True).stdout
    names: set[str] = set()
    for line in out.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            names.add(fields[1].lower())  # the language code, e.g. en-us
            names.add(fields[4].rsplit("/", 1)[-1].lower())  # the file, e.g. gmw/en-US
    return frozenset(names)


def check_voice(voice: str) -> None:
    """Raise ``BadInputError`` for a voice that neither engine has (before anything runs)."""
    if voice.startswith(_FLITE):
        if voice[len(_FLITE):] not in FLITE_VOICES:
            raise BadInputError(f"unknown flite voice {voice!r} (flite has: "
                                f"{', '.join(_FLITE + v for v in FLITE_VOICES)})")
        return
    base = voice.split("+", 1)[0].lower()
    if base not in _espeak_voices():
        raise BadInputError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`; "
                            "a variant is added as en-us+f3)")


@functools.cache
def _synthesize(text: str, voice: str, speed_wpm: int) -> bytes:
    with tempfile.TemporaryDirectory(prefix="glasses-voice-") as tmp:
        wav = Path(tmp) / "speech.wav"
        if voice.startswith(_FLITE):
            command = [_program("flite"), "-voice", voice[len(_FLITE):], "-t", text,
                       "-o", str(wav)]
        else:
            command = [_program("espeak-ng"), "-v", voice, "-s", str(speed_wpm), "-w",
                       str(wav), text]
        proc = subprocess.run(command, capture_output=True, text=True)
        if proc.returncode != 0 or not wav.is_file():
            raise BadInputError(f"{command[0]} could not speak {text!r} with voice {voice!r}: "
                                f"{(proc.stderr or proc.stdout).strip()[:200]}")
        return wav.read_bytes()


def synthesize(text: str, voice: str = "en-us", *, speed_wpm: int = 160) -> FloatArray:
    """``text`` spoken in ``voice``, 16 kHz mono float32 in [-1, 1]. (flite has one rate.)"""
    import io

    import soundfile
    import soxr

    check_voice(voice)
    data, rate = soundfile.read(io.BytesIO(_synthesize(text, voice, speed_wpm)),
                                dtype="float32", always_2d=True)
    mono = data.mean(axis=1)
    if rate != RATE_HZ:
        mono = soxr.resample(mono, rate, RATE_HZ)
    return np.ascontiguousarray(mono, dtype=np.float32)
