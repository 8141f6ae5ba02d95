"""End of turn: when the wearer has finished, and their transcript as soon as they have.

Three parts, kept apart:

- ``SmartTurn``, the model runtime: Smart Turn v3.2 (BSD-2-Clause; the int8 ONNX file
  that ships in the ``pipecat-ai`` wheel, registered as ``smart_turn_v3``) run through
  ``edge_models``' one session factory, on our own Whisper log-mel features
  (``whisper_log_mel``) of the last 8 s of the turn. It gives the probability that the
  turn is complete. pipecat itself is never imported.
- ``text_verdict``, what the transcript's end says: a last word after which no English
  sentence ends ("the", "and", "um": "what's the, um") or which ends one only as a
  question ("remind me to."), a trailing comma: ``"incomplete"``.
- ``TurnStage``, the stage after the wake gate. It never reads the clock: silence is
  counted on the audio's own time (the chunks' timestamps).

One turn, in audio time, silence counted from the end of the speech so far::

    speech ... pause_s (64 ms): SpeechPaused -> Whisper starts on the turn so far; the
                   text's verdict (``text_verdict``) when it is done
               complete_silence_s (0.15 s): a "question" ends here (unless Whisper
                   gives its last word less than 0.5: then "unsure")
               check_silence_s (0.2 s): an "open" or "unsure" one goes to Smart Turn:
                   complete -> ends
               incomplete_silence_s (0.35 s): an "open" one Smart Turn held back ends
               unsure_silence_s (0.7 s): an "unsure" one Smart Turn held back ends (past
                   a pause inside a sentence: "what's the, um" reads as "What's up?")
               max_silence_s (1.0 s): the VAD closes the utterance: any turn ends
                   ("incomplete" and "empty" ones wait for this; a turn that began
                   with the wake phrase and has nothing after it yet is "empty")
    speech resumes first: SpeechResumed -> the speculative text is dropped, the turn goes on
    speech resumes after the turn ended (the wearer went on, inside the VAD's bound): the
                   turn is re-opened; its next transcript is the whole turn again, marked
                   ``revises`` (it replaces the one handed on, whose answer is dropped)

A turn ends with its transcript: the one made at the pause when nothing was said
since (so the wearer does not wait for Whisper), else a new one.

A turn whose segment began with the wake phrase (a ``WakeDetected`` came after its
``SpeechStarted``, or, where the gate did not spot (a follow-up, push-to-talk), Whisper
heard the phrase at the start of a pause's transcript) is transcribed with the phrase
given to Whisper as the start of the
text ("Hey glasses,"): the gate has already checked that it was said, and so
Whisper's shorter encoder window (``turn.encoder_window_s``, about 4x faster) is as
accurate as the full one on the measured voices, where without the phrase it was
not (docs/hearing.md). Other turns (push-to-talk, a follow-up) use ``asr.encoder_window_s``.

Smart Turn runs only at a candidate end of a turn meant for the assistant (after the
wake gate), never on silence and never on bystanders' speech. Speech that resumes
after a turn was ended early (within ``max_silence_s``, so inside the same VAD
segment) re-opens it: an early end is a guess ("hey glasses, can you" reads as a
question; Smart Turn may call a content word's end complete), and what the wearer said
is one request, so the next transcript covers the whole turn (``Transcript.revises``:
the runtime's new question wins over the early one, and a log reader replaces it).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from glasses_agent.config import ModelsConfig, TurnConfig
from glasses_agent.edge.speech.asr import WhisperAsr
from glasses_agent.edge.speech.text import words_of
from glasses_agent.edge.speech.wake import phrase_as_written, strip_wake_phrase
from glasses_agent.errors import BadInputError
from glasses_agent.frames import (
    AudioChunk,
    FloatArray,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Transcript,
    Utterance,
    WakeDetected,
)

__all__ = [
    "ENGINES",
    "TURN_MODEL",
    "TURN_WINDOW_S",
    "SmartTurn",
    "TurnCheck",
    "TurnStage",
    "Verdict",
    "check_turn_config",
    "load_turn_session",
    "text_verdict",
    "whisper_log_mel",
]

ENGINES = ("smart_turn", "off")
TURN_MODEL = "smart_turn_v3"
RATE_HZ = 16_000
# Smart Turn sees the last 8 s of the turn, zero-padded on the left.
TURN_WINDOW_S = 8.0
# Audio before the speech's start that Smart Turn sees too (pipecat's pre_speech_ms).
TURN_PRE_SPEECH_S = 0.5
# A question's last word must be at least this probable to Whisper for the question to end
# the turn at once: fragments heard as questions ("what's the, um" as "What's up?",
# "What's this?") end on a word Whisper gives 0.33-0.49; the dev set's true questions
# 0.54-0.99 (docs/hearing.md).
QUESTION_MIN_WORD_PROBABILITY = 0.5
_N_FFT = 400
_HOP = 160
_N_MELS = 80
DEFAULT_MODELS = ModelsConfig()
DEFAULT_TURN = TurnConfig()

Verdict = Literal["incomplete", "question", "unsure", "open", "empty"]
# No English sentence ends after these: articles, conjunctions, possessive determiners,
# hesitations ("what's the, um").
_NEVER_LAST = frozenset({
    "a", "an", "the", "and", "or", "but", "nor", "because", "my", "your", "our", "their",
    "um", "umm", "uh", "uhm", "uhh", "er", "erm", "ah", "hmm", "mm",
})
# Sentences end after these mostly as questions ("what is it for?", "where is it?"):
# prepositions, "to", auxiliaries. Without a question mark: incomplete ("remind me to").
_QUESTION_LAST = frozenset({
    "to", "of", "for", "with", "from", "at", "in", "on", "about", "into", "onto", "by",
    "like", "than", "is", "are", "was", "were", "am", "be", "do", "does", "did", "can",
    "could", "will", "would", "should", "shall", "may", "might", "must", "has", "have",
    "if", "when", "where", "which", "who", "whose", "whether",
})


def text_verdict(text: str) -> Verdict:
    """What the end of a transcript says about the turn.

    ``"incomplete"``: it stops after a word no sentence ends with ("the", "and", "um"),
    or after a preposition, "to" or an auxiliary without a question mark ("remind me
    to."), or with a comma, a colon or a dash. (Not an ellipsis: Whisper writes one
    after complete sentences said slowly.) ``"question"``: it ends with a question
    mark. ``"empty"``: no words. ``"open"``: anything else (the audio decides).
    """
    words = words_of(text)
    if not words:
        return "empty"
    stripped = text.rstrip()
    if stripped.endswith((",", "-", "\u2014", ";", ":")):
        return "incomplete"
    last = words[-1]
    question = stripped.endswith("?")
    if last in _NEVER_LAST or (last in _QUESTION_LAST and not question):
        return "incomplete"
    return "question" if question else "open"


@dataclass(frozen=True, slots=True, kw_only=True)
class _MelBank:
    filters: FloatArray
    window: FloatArray


_MEL: _MelBank | None = None


def _mel_bank() -> _MelBank:
    global _MEL
    if _MEL is None:
        # Whisper's Slaney mel filter bank, as faster-whisper (a core dependency) builds it.
        from faster_whisper.feature_extractor import FeatureExtractor

        filters = FeatureExtractor.get_mel_filters(RATE_HZ, _N_FFT, n_mels=_N_MELS)
        window = np.hanning(_N_FFT + 1)[:-1]  # periodic Hann, as torch.hann_window
        _MEL = _MelBank(filters=np.asarray(filters, np.float32),
                        window=np.asarray(window, np.float32))
    return _MEL


def whisper_log_mel(samples: FloatArray) -> FloatArray:
    """Smart Turn's input for one window: ``[80, 800]`` float32.

    ``samples`` is 16 kHz mono; the last 8 s are used, zero-padded on the left. As the
    model was trained (Whisper's feature extractor with ``do_normalize``): the padded
    window is normalized to zero mean and unit variance, then a centred STFT (reflect
    padding, periodic Hann 400, hop 160), power, 80 Slaney mel bins, log10 (floor 1e-10),
    clamped to 8 below its maximum, (x + 4) / 4, the last frame dropped.
    """
    n = round(TURN_WINDOW_S * RATE_HZ)
    audio = np.asarray(samples, dtype=np.float32)[-n:]
    if len(audio) < n:
        audio = np.concatenate([np.zeros(n - len(audio), np.float32), audio])
    audio = (audio - audio.mean()) / np.sqrt(audio.var() + 1e-7)
    bank = _mel_bank()
    padded = np.pad(audio, (_N_FFT // 2, _N_FFT // 2), mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, _N_FFT)[::_HOP][:-1]
    spectrum = np.fft.rfft(frames * bank.window, axis=-1)
    power = (spectrum.real ** 2 + spectrum.imag ** 2).astype(np.float32)
    log_mel = np.log10(np.maximum(bank.filters @ power.T, 1e-10))
    log_mel = np.maximum(log_mel, log_mel.max() - 8.0)
    return np.asarray((log_mel + 4.0) / 4.0, dtype=np.float32)


def load_turn_session(models: ModelsConfig = DEFAULT_MODELS) -> Any:
    """The Smart Turn v3.2 ONNX session (hash-checked, from the registry)."""
    from edge_models.registry import open_session

    return open_session(TURN_MODEL, providers=models.providers,
                        intra_op_threads=models.intra_op_threads)


class SmartTurn:
    """The probability that a turn is complete, from its audio (Smart Turn v3.2)."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.calls = 0

    def __call__(self, samples: FloatArray) -> float:
        """``samples``: the turn so far (16 kHz mono, pre-roll and the silence after it)."""
        self.calls += 1
        features = whisper_log_mel(samples)[None]
        (probability,) = self.session.run(None, {"input_features": features})
        return float(np.asarray(probability).reshape(-1)[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnCheck:
    """One look at a candidate end (kept in ``TurnStage.checks``, for benchmarks and logs)."""

    speech_end_s: float
    silence_s: float
    text: str
    verdict: Verdict
    probability: float | None
    ended: bool


@dataclass(slots=True, kw_only=True)
class _Candidate:
    """A candidate end of turn: the speculative transcript and what is known of it."""

    pause: SpeechPaused
    start_s: float
    transcript: Transcript
    verdict: Verdict
    next_check_s: float | None
    probability: float | None = None


class TurnStage:
    """SpeechPaused / SpeechResumed / AudioChunk / Utterance -> Transcript, one per turn
    (and one more, ``revises``, each time the wearer goes on after an early end).

    The recognition stage of the always-on listener (after the wake gate). Whisper runs
    when a pause begins; the turn ends early when the text's verdict is not
    "incomplete" and Smart Turn judges it complete, else when the VAD closes the
    utterance (``max_silence_s``). ``turn=None`` (engine "off"): only the VAD ends turns,
    and the transcript started at the pause is kept when speech did not resume.
    """

    def __init__(self, asr: WhisperAsr, turn: SmartTurn | None, config: TurnConfig = DEFAULT_TURN,
                 *, wake_phrase: str = "", preroll_s: float = 0.3,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        check_turn_config(config)
        self.asr = asr
        self.wake_phrase = wake_phrase
        self.prefix = f"{phrase_as_written(wake_phrase)}," if wake_phrase.strip() else None
        self.turn = turn
        self.config = config
        self.preroll_s = preroll_s
        self.timer = timer
        self._recent: deque[AudioChunk] = deque()
        self._keep_s = TURN_WINDOW_S + TURN_PRE_SPEECH_S + 1.0
        self._audio_end_s = 0.0
        self._candidate: _Candidate | None = None
        self._last_ended: SpeechEnded | None = None
        self._answered = False
        self._revising = False
        self._phrase_heard = False
        self.speculations = 0
        self.early_ends = 0
        self.last_probability: float | None = None
        self.last_verdict: Verdict | None = None
        self.checks: deque[TurnCheck] = deque(maxlen=64)

    @classmethod
    def from_config(cls, config: TurnConfig, *, asr: WhisperAsr,
                    models: ModelsConfig = DEFAULT_MODELS, wake_phrase: str = "",
                    preroll_s: float = 0.3) -> TurnStage:
        check_turn_config(config)
        turn = SmartTurn(load_turn_session(models)) if config.engine == "smart_turn" else None
        return cls(asr, turn, config, wake_phrase=wake_phrase, preroll_s=preroll_s)

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, AudioChunk):
            self._on_audio(frame)
            return [frame, *self._check()]
        if isinstance(frame, SpeechStarted):
            self._candidate = None
            self._answered = False
            self._revising = False
            self._phrase_heard = False
            return [frame]
        if isinstance(frame, WakeDetected):
            self._phrase_heard = True
            return [frame]
        if isinstance(frame, SpeechPaused):
            return [frame, *self._on_pause(frame)]
        if isinstance(frame, SpeechResumed):
            self._candidate = None
            if self._answered:  # the wearer went on after an early end: the turn re-opens
                self._answered = False
                self._revising = True
            return [frame]
        if isinstance(frame, SpeechEnded):
            self._last_ended = frame
            return [frame]
        if isinstance(frame, Utterance):
            return [frame, *self._on_end(frame)]
        return [frame]

    def _on_audio(self, chunk: AudioChunk) -> None:
        self._recent.append(chunk)
        self._audio_end_s = max(self._audio_end_s, chunk.timestamp_s + chunk.duration_s)
        while self._recent and (self._recent[0].timestamp_s + self._recent[0].duration_s
                                < self._audio_end_s - self._keep_s):
            self._recent.popleft()

    def _with_phrase(self) -> bool:
        """Whether this turn began with the wake phrase (Whisper is given it)."""
        return bool(self._phrase_heard and self.prefix)

    def _after_phrase(self, text: str) -> str:
        """``text`` without the wake phrase, twice (Whisper may repeat the given phrase)."""
        for _ in range(2):
            text = strip_wake_phrase(text, self.wake_phrase)
        return text

    def _transcribe(self, utterance: Utterance, speech_start_s: float,
                    speech_end_s: float) -> Transcript:
        with_phrase = self._with_phrase()
        return self.asr.transcribe(
            utterance, speech_start_s=speech_start_s,
            speech_end_s=speech_end_s, timer=self.timer,
            prefix=self.prefix if with_phrase else None,
            encoder_window_s=self.config.encoder_window_s if with_phrase else None,
            unloop=True)

    def _on_pause(self, pause: SpeechPaused) -> list[Frame]:
        self.speculations += 1
        start_s = pause.start_s
        transcript = self._transcribe(pause.utterance, start_s, pause.timestamp_s)
        if (not self._phrase_heard and self.prefix
                and self._after_phrase(transcript.text) != transcript.text):
            # The phrase said where the gate did not spot it (a follow-up, push-to-talk):
            # Whisper heard it, so the rest of this turn is transcribed as after a wake.
            self._phrase_heard = True
        verdict = text_verdict(transcript.text)
        if self._with_phrase() and not words_of(self._after_phrase(transcript.text)):
            verdict = "empty"  # the wake phrase and nothing else yet ("Hey glasses, hey glasses")
        elif verdict == "question" and transcript.words and (
                transcript.words[-1].probability < QUESTION_MIN_WORD_PROBABILITY):
            verdict = "unsure"  # Whisper is unsure of the word that would end it
        self.last_verdict = verdict
        self._candidate = _Candidate(pause=pause, start_s=start_s, transcript=transcript,
                                     verdict=verdict,
                                     next_check_s=self.config.complete_silence_s)
        return self._check()

    def _check(self) -> list[Frame]:
        """At the check points of a pause: end the turn now if it is complete."""
        candidate = self._candidate
        if candidate is None or candidate.next_check_s is None:
            return []
        silence_s = self._audio_end_s - candidate.pause.timestamp_s
        if silence_s < candidate.next_check_s - 1e-9:
            return []
        cfg = self.config
        probability: float | None = None
        if self.turn is None or candidate.verdict in ("incomplete", "empty"):
            candidate.next_check_s = None  # the VAD ends it (max_silence_s)
            ended = False
        elif candidate.verdict == "question":
            ended = True
        else:  # "open", "unsure": the audio decides, else the bounded wait
            # an "unsure" one waits longer than a pause inside a sentence
            bound_s = (cfg.unsure_silence_s if candidate.verdict == "unsure"
                       else cfg.incomplete_silence_s)
            if silence_s >= bound_s - 1e-9:
                ended = True
            elif silence_s < cfg.check_silence_s - 1e-9:
                candidate.next_check_s = cfg.check_silence_s
                return []
            else:
                probability = self.turn(
                    self._recent_audio(candidate.start_s - TURN_PRE_SPEECH_S))
                self.last_probability = probability
                ended = probability >= cfg.threshold
                candidate.next_check_s = bound_s
        self.checks.append(TurnCheck(
            speech_end_s=candidate.pause.timestamp_s, silence_s=round(silence_s, 3),
            text=candidate.transcript.text, verdict=candidate.verdict, probability=probability,
            ended=ended))
        if not ended:
            return []
        self._candidate = None
        self._answered = True
        self.early_ends += 1
        return [self._handed_on(candidate.transcript)]

    def _handed_on(self, transcript: Transcript) -> Transcript:
        """The turn's transcript as handed on: ``revises`` after a re-opened turn."""
        if self._revising:
            self._revising = False
            return replace(transcript, revises=True)
        return transcript

    def _recent_audio(self, from_s: float) -> FloatArray:
        chunks = [c for c in self._recent if c.timestamp_s + c.duration_s > from_s]
        if not chunks:
            return np.zeros(0, dtype=np.float32)
        audio = np.concatenate([c.samples for c in chunks])
        skip = max(0, round((from_s - chunks[0].timestamp_s) * RATE_HZ))
        return np.asarray(audio[skip:], dtype=np.float32)

    def _on_end(self, utterance: Utterance) -> list[Frame]:
        """The VAD closed the utterance: the turn's transcript, unless already given."""
        candidate, self._candidate = self._candidate, None
        ended = self._last_ended
        if self._answered:
            self._answered = False
            return []
        speech_end_s = utterance.end_s
        if ended is not None and utterance.start_s <= ended.start_s <= utterance.end_s:
            speech_end_s = ended.timestamp_s
        if candidate is not None and abs(candidate.pause.timestamp_s - speech_end_s) < 1e-6:
            transcript = candidate.transcript  # the speculation holds: nothing was said since
        else:
            start_s = utterance.start_s + self.preroll_s
            if ended is not None and utterance.start_s <= ended.start_s <= utterance.end_s:
                start_s = ended.start_s
            transcript = self._transcribe(utterance, start_s, speech_end_s)
        if not transcript.text.strip():
            self._revising = False
            return []
        return [self._handed_on(transcript)]


def check_turn_config(config: TurnConfig) -> None:
    """Out-of-range ``[turn]`` settings: one clear line (``BadInputError``)."""
    if config.engine not in ENGINES:
        raise BadInputError(f"unknown turn engine {config.engine!r} "
                            f"(choose from: {', '.join(ENGINES)})")
    if not 0.0 < config.threshold < 1.0:
        raise BadInputError(f"turn.threshold must be in (0, 1), not {config.threshold}")
    if not 0.0 <= config.encoder_window_s <= 30.0:
        raise BadInputError(f"turn.encoder_window_s must be 0 (full) to 30 s, not "
                            f"{config.encoder_window_s}")
    silences = (config.pause_s, config.complete_silence_s, config.check_silence_s,
                config.incomplete_silence_s, config.unsure_silence_s, config.max_silence_s)
    growing = all(a <= b for a, b in zip(silences, silences[1:], strict=False))
    if not (silences[0] > 0 and growing and silences[3] < silences[5]):
        raise BadInputError(
            "turn silences must grow: 0 < pause_s <= complete_silence_s <= check_silence_s "
            "<= incomplete_silence_s <= unsure_silence_s <= max_silence_s "
            "(incomplete < max), not " + ", ".join(f"{v:g}" for v in silences))
