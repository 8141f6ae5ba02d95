"""Wake phrase and push-to-talk: which utterances are meant for the assistant.

``WakeGate`` is the stage after the VAD. It passes on an ``Utterance`` only when
it was opened by a temple tap (``trigger="button"``, see ``Endpointer.press``) or
began with the wake phrase (re-marked ``trigger="wake"``); every other
utterance (bystanders, the wearer talking to someone) is dropped before any
recognition. A bare "hey glasses" followed by a pause arms a follow-up: the
next utterance within ``follow_up_s`` is taken as the question.

Engines (``[wake] engine``):

- ``"phrase"`` (default, license-clean): phrase spotting on the first
  2 s of each VAD speech segment, cut at its quietest point after 0.9 s (the
  pause after "hey glasses," when there is one: Whisper guesses wildly at a
  word cut in half). Whisper tiny.en (the ASR model, already loaded; MIT)
  encodes that short window once; the decoder then gives the probability of
  the phrase's tokens forced at the start (" Hey glasses": P(" Hey") and
  P(" glasses" | " Hey")), and the score is the fourth root of their geometric
  mean, so the default threshold 0.5 accepts at a mean token probability of
  1/16. A voice Whisper mishears ("I hate glasses") still gives the forced
  phrase a fair probability, while speech that is not the phrase gives it
  almost none ("hey guys" 0.001 for " glasses", "her glasses" 0.002 for
  " Hey"). A greedy transcript of the same window (for the bare-phrase check
  and ``last_heard``) costs a few decoder steps more; a filler word before the
  phrase in it ("Oh, hey glasses") forces the phrase after that word too.
  Cost: one encoder pass (about 0.3 s on 2 cores) per speech segment; nothing
  at all on silence.
- ``"openwakeword"`` (opt-in): openWakeWord 0.4.0's bundled models, run here on
  onnxruntime alone (its package imports scikit-learn, so the streaming
  features are ported from its Apache-2.0 code). The models are CC BY-NC-SA
  4.0, non-commercial; choosing the engine prints that. Phrases: the bundled
  ones ("hey jarvis", "hey mycroft", "hey marvin", "alexa").
- ``"off"``: push-to-talk only.

With the always-on listener's pauses (``SpeechPaused``, ``SpeechResumed``), the gate
passes on a pause of a segment meant for the assistant (its speculative transcript can
start) and drops the others. With ``early_spots`` (the listener) a segment is spotted
at its first pause after 0.6 s of speech (the segment so far, as if it ended there:
usually "hey glasses," with the question still to come) or at its first chunk 30 dB
under its loudest after ``min_window_s`` (the window cut there), whichever comes first
before ``window_s``: the spotting is done while the wearer talks, and a short question
is known to be for us when its silence begins. An early spotting that came close
(``SECOND_CHANCE_MARGIN``) but did not wake is done again at ``window_s`` or the
segment's end, on more speech. So at most two spottings per segment (more pauses'
spottings when one heard fewer words than the phrase has).
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glasses_agent.config import ModelsConfig, WakeConfig
from glasses_agent.edge.speech.text import edit_distance, words_of
from glasses_agent.errors import BadInputError
from glasses_agent.frames import (
    AudioChunk,
    FloatArray,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Utterance,
    WakeDetected,
)

__all__ = [
    "ENGINES",
    "OPENWAKEWORD_LICENSE_NOTICE",
    "OPENWAKEWORD_PHRASES",
    "OpenWakeWordSpotter",
    "PhraseSpotter",
    "Spotted",
    "WakeGate",
    "make_wake_gate",
    "phrase_as_written",
    "phrase_score",
    "strip_wake_phrase",
]

ENGINES = ("phrase", "openwakeword", "off")
OPENWAKEWORD_LICENSE_NOTICE = (
    "wake engine openwakeword: openWakeWord's bundled models are licensed CC BY-NC-SA 4.0 "
    "(Attribution-NonCommercial-ShareAlike; https://creativecommons.org/licenses/by-nc-sa/4.0/): "
    "non-commercial use only. The default engine \"phrase\" has no such restriction."
)
# Bundled openWakeWord models: phrase -> its name in the model registry (edge_models).
OPENWAKEWORD_PHRASES = {
    "hey jarvis": "openwakeword_hey_jarvis",
    "hey mycroft": "openwakeword_hey_mycroft",
    "hey marvin": "openwakeword_hey_marvin",
    "alexa": "openwakeword_alexa",
}
SAMPLE_RATE_HZ = 16_000
DEFAULT_MODELS = ModelsConfig()
# Audio kept before a segment's start for spotting (the VAD onset is a little late).
SPOT_PREROLL_S = 0.25
# A pause this far into a segment (or later, within the spotting window) is where the
# segment is spotted: "hey glasses" takes 0.6-1.2 s.
PAUSE_SPOT_MIN_S = 0.6
# With early spots, a chunk this far below the segment's loudest after min_window_s of
# speech is where the spotting window is cut (before window_s).
QUIET_DB = 30.0
# An early spotting that scored at least the threshold less this is done again later, on
# more speech (a voice Whisper mishears on the phrase alone).
SECOND_CHANCE_MARGIN = 0.2
# The phrase spotter's score is the geometric mean of the forced tokens' probabilities to
# the power 1 / SCORE_ROOT: threshold 0.5 = mean token probability 0.5 ** 4 = 1/16.
SCORE_ROOT = 4.0


def _similarity(heard: str, expected: str) -> float:
    return max(0.0, 1.0 - edit_distance(heard, expected) / len(expected)) if expected else 1.0


def phrase_score(text: str, phrase: str, *, max_offset: int = 1) -> tuple[float, int]:
    """How well ``text`` starts with ``phrase`` (0..1), and how many heard words that took.

    The phrase may start at word 0 or up to ``max_offset`` words later ("oh, hey
    glasses"). Word for word, the score is the product of the per-word
    similarities (1 - edit distance / length of the phrase's word); a phrase
    heard as one word more or less ("heyglasses", "hey glass es") is compared
    letter for letter, three times as strictly (1 - 3 * distance / length).
    """
    heard = words_of(text)
    target = words_of(phrase)
    if not target or not heard:
        return 0.0, 0
    n = len(target)
    joined_target = "".join(target)
    best = (0.0, 0)
    for offset in range(0, max_offset + 1):
        window = heard[offset:offset + n]
        if len(window) == n:
            score = float(np.prod([_similarity(h, t)
                                   for h, t in zip(window, target, strict=True)]))
            best = max(best, (score, offset + n))
        for m in (n - 1, n + 1):
            window = heard[offset:offset + m]
            if m < 1 or len(window) != m:
                continue
            distance = edit_distance("".join(window), joined_target)
            score = max(0.0, 1.0 - 3.0 * distance / len(joined_target))
            best = max(best, (score, offset + m))
    return best


def phrase_as_written(phrase: str) -> str:
    """The phrase as Whisper writes it at the start of a transcript: "Hey glasses"."""
    written = " ".join(phrase.split())
    return written[:1].upper() + written[1:]


def strip_wake_phrase(text: str, phrase: str, *, threshold: float = 0.5) -> str:
    """``text`` without the wake phrase at its start ("Hey glasses, what is it?" -> "what is
    it?"); unchanged when it does not start with the phrase."""
    score, consumed = phrase_score(text, phrase)
    if score < threshold or consumed == 0:
        return text
    tokens = text.split()
    taken = 0
    for index, token in enumerate(tokens):
        taken += len(words_of(token))
        if taken >= consumed:
            return " ".join(tokens[index + 1:]).lstrip(" ,.!?;:-")
    return ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Spotted:
    """A spotting result: the score, what was heard, and whether more than the phrase was."""

    score: float
    text: str
    more_than_phrase: bool


class PhraseSpotter:
    """Whisper on a short window: the probability of the phrase forced at its start."""

    def __init__(self, asr: Any, phrase: str = "hey glasses", *, min_window_s: float = 0.9,
                 window_s: float = 2.0, max_new_tokens: int = 12) -> None:
        if not words_of(phrase):
            raise BadInputError("wake.phrase is empty")
        self.asr = asr
        self.phrase = phrase
        self.min_window_s = min_window_s
        self.window_s = window_s
        self.max_new_tokens = max_new_tokens
        self.calls = 0
        self._decoder: tuple[Any, list[int], list[int], tuple[int, ...]] | None = None

    def cut(self, samples: FloatArray, *, lead_s: float) -> FloatArray:
        """``samples`` (speech starting ``lead_s`` in) cut at the quietest 32 ms after
        ``min_window_s`` of speech, so that no word is cut in half."""
        hop = 256
        first = round((lead_s + self.min_window_s) * SAMPLE_RATE_HZ)
        if len(samples) - first < 2 * hop:
            return samples
        frames = np.lib.stride_tricks.sliding_window_view(samples[first:], 2 * hop)[::hop]
        quietest = int(np.argmin((frames.astype(np.float64) ** 2).mean(axis=1)))
        return samples[:first + quietest * hop + hop]

    def spot(self, samples: FloatArray, *, lead_s: float = 0.0, cut: bool = True) -> Spotted:
        """Score ``samples`` whose speech starts ``lead_s`` in; ``cut``: a window of speech
        that goes on (cut it at a pause), else a whole segment."""
        self.calls += 1
        if cut:
            samples = self.cut(samples, lead_s=lead_s)
        text, score = self._forced(samples)
        consumed = phrase_score(text, self.phrase)[1]
        return Spotted(score=score, text=text,
                       more_than_phrase=len(words_of(text)) > consumed)

    def _tokens(self) -> tuple[Any, list[int], list[int], tuple[int, ...]]:
        """(tokenizer, start sequence, the phrase's tokens, tokens greedy decoding skips)."""
        if self._decoder is None:
            from faster_whisper.tokenizer import Tokenizer
            from faster_whisper.transcribe import get_suppressed_tokens

            model = self.asr.model
            tokenizer = Tokenizer(model.hf_tokenizer, model.model.is_multilingual,
                                  task="transcribe", language="en")
            start = [*tokenizer.sot_sequence, tokenizer.no_timestamps]
            # As Whisper writes it at the start of a transcript: " Hey glasses".
            phrase = tokenizer.encode(" " + phrase_as_written(self.phrase))
            suppress = get_suppressed_tokens(tokenizer, [-1]) or ()
            self._decoder = (tokenizer, start, phrase, tuple(suppress))
        return self._decoder

    def _forced(self, samples: FloatArray) -> tuple[str, float]:
        """The greedy transcript of ``samples`` and the phrase's forced score (0..1)."""
        from faster_whisper.audio import pad_or_trim

        tokenizer, start, phrase, suppress = self._tokens()
        model = self.asr.model
        audio = np.ascontiguousarray(samples, dtype=np.float32)
        # Always Whisper's full window: the scores and the threshold were measured so, and a
        # 5 s window lowers true phrases' scores to around the threshold.
        model.encoder_frames = None
        features = model.feature_extractor(audio)
        content = int(features.shape[-1]) - 1
        encoded = model.encode(pad_or_trim(features[:, :content]))
        result = model.model.generate(
            encoded, [start], beam_size=1, max_length=len(start) + self.max_new_tokens,
            suppress_blank=True, suppress_tokens=list(suppress),
        )[0]
        heard = list(result.sequences_ids[0])
        text = str(tokenizer.decode(heard)).strip()
        starts = [start]
        words = words_of(text)
        if len(words) > 1 and phrase_score(" ".join(words[1:]), self.phrase,
                                           max_offset=0)[0] >= 0.5:
            # A filler word first ("Oh, hey glasses"): force the phrase after it too.
            decoded = [str(tokenizer.decode([t])) for t in heard]
            first = 1 + next((i for i, piece in enumerate(decoded[1:]) if piece[:1] == " "),
                             len(heard) - 1)
            starts.append([*start, *heard[:first]])
        best = 0.0
        for sequence in starts:
            probs = model.model.align(encoded, sequence, [phrase], content)[0].text_token_probs
            mean_log = float(np.mean(np.log(np.maximum(np.asarray(probs, np.float64), 1e-12))))
            best = max(best, math.exp(mean_log / SCORE_ROOT))
        return text, best


class OpenWakeWordSpotter:
    """openWakeWord's streaming pipeline (melspectrogram -> embedding -> wake model) on
    onnxruntime, 80 ms frames; a port of ``openwakeword.utils.AudioFeatures`` (Apache-2.0)
    that gives the same scores as openwakeword 0.4.0's ``Model.predict``."""

    FRAME_SAMPLES = 1280
    _MEL_CONTEXT = 160 * 3
    _WINDOW = 76

    def __init__(self, phrase: str = "hey jarvis", *,
                 models: ModelsConfig = DEFAULT_MODELS) -> None:
        from edge_models.registry import open_session

        key = " ".join(words_of(phrase))
        if key not in OPENWAKEWORD_PHRASES:
            raise BadInputError(
                f"wake engine openwakeword has no model for {phrase!r} "
                f"(bundled: {', '.join(OPENWAKEWORD_PHRASES)}; use wake.engine=phrase for others)"
            )

        def session(name: str) -> Any:
            return open_session(name, providers=models.providers, intra_op_threads=1)

        self.phrase = key
        self._mel = session("openwakeword_melspectrogram")
        self._embed = session("openwakeword_embedding")
        self._wake = session(OPENWAKEWORD_PHRASES[key])
        self._wake_input = self._wake.get_inputs()[0].name
        self._n_features = int(self._wake.get_inputs()[0].shape[1])
        self.reset()

    def _melspec(self, pcm: FloatArray) -> FloatArray:
        out = self._mel.run(None, {"input": pcm[None, :].astype(np.float32)})[0]
        return np.asarray(np.squeeze(out) / 10.0 + 2.0, dtype=np.float32)

    def reset(self) -> None:
        self._raw = np.zeros(0, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self._melbuf = np.ones((self._WINDOW, 32), dtype=np.float32)
        silence = self._melspec(np.zeros(10 * SAMPLE_RATE_HZ, dtype=np.float32))
        windows = np.stack([silence[i:i + self._WINDOW]
                            for i in range(0, silence.shape[0] - self._WINDOW + 1, 8)])
        self._features = np.asarray(
            self._embed.run(None, {"input_1": windows[..., None]})[0], dtype=np.float32
        ).reshape(len(windows), -1)
        self._frames = 0

    def push(self, samples: FloatArray) -> float:
        """The highest wake score over the 80 ms frames completed by ``samples``."""
        self._pending = np.concatenate([self._pending, samples * 32767.0])
        best = 0.0
        while len(self._pending) >= self.FRAME_SAMPLES:
            frame = self._pending[:self.FRAME_SAMPLES]
            self._pending = self._pending[self.FRAME_SAMPLES:]
            keep = self.FRAME_SAMPLES + self._MEL_CONTEXT
            self._raw = np.concatenate([self._raw, frame])[-keep:]
            self._melbuf = np.vstack([self._melbuf, self._melspec(self._raw)])[-970:]
            window = self._melbuf[-self._WINDOW:][None, :, :, None]
            embedding = np.asarray(self._embed.run(None, {"input_1": window})[0]).reshape(1, -1)
            self._features = np.vstack([self._features, embedding])[-120:]
            features = self._features[-self._n_features:][None].astype(np.float32)
            score = float(np.asarray(self._wake.run(None, {self._wake_input: features})[0])
                          .reshape(-1)[0])
            self._frames += 1
            if self._frames > 5:  # openWakeWord zeroes its first 5 frames
                best = max(best, score)
        return best


class WakeGate:
    """Passes on only the utterances meant for the assistant (see the module docstring)."""

    def __init__(
        self,
        spotter: PhraseSpotter | OpenWakeWordSpotter | None,
        *,
        phrase: str = "hey glasses",
        threshold: float = 0.5,
        follow_up_s: float = 5.0,
        refractory_s: float = 1.5,
        early_spots: bool = False,
    ) -> None:
        """``early_spots``: spot a segment at its first pause after 0.6 s or its first quiet
        chunk after ``min_window_s`` (the always-on listener), not only at ``window_s``."""
        self.spotter = spotter
        self.early_spots = early_spots
        self.phrase = phrase
        self.threshold = threshold
        self.follow_up_s = follow_up_s
        self.refractory_s = refractory_s
        keep_s = (spotter.window_s if isinstance(spotter, PhraseSpotter) else 0.0) + 1.0
        self._recent: deque[AudioChunk] = deque()
        self._keep_s = keep_s + SPOT_PREROLL_S
        self._segment_start_s: float | None = None
        self._spotted = False
        self._early_done = False
        self._woken = False
        self._bare_phrase = False
        self._armed_until_s: float | None = None
        self._last_detect_s = -1e9
        self.last_score = 0.0
        self.last_heard = ""
        self.detections = 0

    @property
    def woken(self) -> bool:
        """The speech going on now is taken as meant for us (the gate was armed when it
        began, or the phrase was heard)."""
        return self._woken

    def arm(self, until_s: float) -> None:
        """Take the next utterance that starts by ``until_s`` as meant for us, no wake phrase
        needed (the runtime arms it while the assistant speaks and just after: a reply, or
        a barge-in, is a follow-up)."""
        self._armed_until_s = max(self._armed_until_s or until_s, until_s)

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, AudioChunk):
            return [frame, *self._on_audio(frame, now_s)]
        if isinstance(frame, SpeechStarted):
            self._segment_start_s = frame.timestamp_s
            self._spotted = False
            self._early_done = False
            self._bare_phrase = False
            self._woken = self._armed_until_s is not None and now_s <= self._armed_until_s
            return [frame]
        if isinstance(frame, SpeechEnded):
            out: list[Frame] = [frame]
            if isinstance(self.spotter, PhraseSpotter) and not self._spotted:
                out.extend(self._spot(frame.timestamp_s + 0.15, now_s, segment_over=True))
            return out
        if isinstance(frame, SpeechPaused):
            return self._on_pause(frame, now_s)
        if isinstance(frame, SpeechResumed):
            self._bare_phrase = False  # more than the phrase after all
            return [frame]
        if isinstance(frame, Utterance):
            return self._on_utterance(frame, now_s)
        return [frame]

    def _on_audio(self, chunk: AudioChunk, now_s: float) -> list[Frame]:
        self._recent.append(chunk)
        end_s = chunk.timestamp_s + chunk.duration_s
        while self._recent and (self._recent[0].timestamp_s + self._recent[0].duration_s
                                < end_s - self._keep_s):
            self._recent.popleft()
        if isinstance(self.spotter, OpenWakeWordSpotter):
            score = self.spotter.push(chunk.samples)
            self.last_score = score
            if score >= self.threshold and now_s - self._last_detect_s >= self.refractory_s:
                return self._wake(score, now_s)
            return []
        if (isinstance(self.spotter, PhraseSpotter) and self._segment_start_s is not None
                and not self._spotted):
            start_s = self._segment_start_s
            if end_s >= start_s + self.spotter.window_s:
                return self._spot(start_s + self.spotter.window_s, now_s, segment_over=False)
            if (self.early_spots and not self._early_done
                    and end_s > start_s + self.spotter.min_window_s):
                # A quiet 32 ms after min_window_s: the window can be cut there already (a
                # gap between words, often the one after "hey glasses,"), so the spotting
                # is done while the wearer still talks, not at the end of a short question.
                levels = [float(np.mean(np.square(c.samples, dtype=np.float64)))
                          for c in self._recent if c.timestamp_s >= start_s - 0.1]
                if levels[-1] <= max(levels) * 10 ** (-QUIET_DB / 10):
                    return self._early_spot(end_s, now_s, at_pause=False)
        return []

    def _on_pause(self, pause: SpeechPaused, now_s: float) -> list[Frame]:
        out: list[Frame] = []
        if (isinstance(self.spotter, PhraseSpotter) and self.early_spots
                and not self._spotted and not self._early_done and not self._woken
                and self._segment_start_s is not None
                and PAUSE_SPOT_MIN_S <= pause.timestamp_s - self._segment_start_s
                < self.spotter.window_s):
            # Spotted here, on the segment so far as if it ended here (the phrase would be
            # at its start): usually the pause after "hey glasses,", while the question is
            # still to come.
            out.extend(self._early_spot(pause.timestamp_s + 0.15, now_s, at_pause=True))
        utterance = pause.utterance
        if utterance.trigger == "button":
            return [*out, pause]
        if isinstance(self.spotter, OpenWakeWordSpotter):
            bare = utterance.end_s - utterance.start_s < 1.6
        else:
            bare = self._bare_phrase
        if self._woken and not bare:
            return [*out, dataclasses.replace(
                pause, utterance=dataclasses.replace(utterance, trigger="wake"))]
        return out

    def _early_spot(self, until_s: float, now_s: float, *, at_pause: bool) -> list[Frame]:
        """A spotting before the segment's window is full (at a pause, at a quiet chunk): on
        the speech so far. Not woken by it but within ``SECOND_CHANCE_MARGIN`` of the
        threshold, the segment is spotted again at ``window_s`` or its end, on more speech:
        a second chance, not a lower bar (flite slt's "hey glasses," heard as "Take
        glasses." at its pause, 0.46, woke on the longer window, 0.51-0.60; speech without
        the phrase mostly scores under 0.1 and is not spotted twice). A pause's spotting
        that heard fewer words than the phrase has ("Hey.") is done again at the next pause;
        a quiet chunk's (the window cut there) is not (the next chunk is as quiet)."""
        out = self._spot(until_s, now_s, segment_over=at_pause)
        if not self._woken:
            fewer = at_pause and len(words_of(self.last_heard)) < len(words_of(self.phrase))
            if fewer or self.last_score >= self.threshold - SECOND_CHANCE_MARGIN:
                self._spotted = False
                self._early_done = not fewer
        return out

    def _spot(self, until_s: float, now_s: float, *, segment_over: bool) -> list[Frame]:
        assert isinstance(self.spotter, PhraseSpotter)
        self._spotted = True
        if self._segment_start_s is None or self._woken:
            return []
        samples = self._audio_between(self._segment_start_s - SPOT_PREROLL_S, until_s)
        if len(samples) < SAMPLE_RATE_HZ // 10:
            return []
        spotted = self.spotter.spot(samples, lead_s=SPOT_PREROLL_S, cut=not segment_over)
        self.last_score = spotted.score
        self.last_heard = spotted.text
        if spotted.score < self.threshold:
            return []
        self._bare_phrase = segment_over and not spotted.more_than_phrase
        return self._wake(spotted.score, now_s)

    def _wake(self, score: float, now_s: float) -> list[Frame]:
        self._last_detect_s = now_s
        self.detections += 1
        if self._segment_start_s is not None:
            self._woken = True
        else:
            self._armed_until_s = now_s + self.follow_up_s
        return [WakeDetected(timestamp_s=now_s, phrase=self.phrase, score=round(score, 3))]

    def _audio_between(self, start_s: float, end_s: float) -> FloatArray:
        parts = [c.samples for c in self._recent
                 if c.timestamp_s + c.duration_s > start_s and c.timestamp_s < end_s]
        if not parts:
            return np.zeros(0, dtype=np.float32)
        first = next(c for c in self._recent if c.timestamp_s + c.duration_s > start_s)
        audio = np.concatenate(parts)
        begin = max(0, round((start_s - first.timestamp_s) * SAMPLE_RATE_HZ))
        stop = max(begin, round((end_s - first.timestamp_s) * SAMPLE_RATE_HZ))
        return audio[begin:stop]

    def _on_utterance(self, utterance: Utterance, now_s: float) -> list[Frame]:
        woken, bare = self._woken, self._bare_phrase
        if isinstance(self.spotter, OpenWakeWordSpotter) and woken:
            # A wake word alone (a short segment) arms the follow-up instead.
            bare = utterance.end_s - utterance.start_s < 1.6
        self._segment_start_s = None
        self._woken = False
        self._bare_phrase = False
        if utterance.trigger == "button":
            self._armed_until_s = None
            return [utterance]
        if woken and bare:
            self._armed_until_s = now_s + self.follow_up_s
            return []
        if woken:
            self._armed_until_s = None
            return [dataclasses.replace(utterance, trigger="wake")]
        return []


def make_wake_gate(
    config: WakeConfig,
    *,
    asr: Any = None,
    models: ModelsConfig = DEFAULT_MODELS,
    notice: Callable[[str], None] | None = None,
    early_spots: bool = False,
) -> WakeGate:
    """The gate for ``[wake]``: ``asr`` (a loaded ``WhisperAsr``) is needed for "phrase"."""
    engine = config.engine.strip().lower()
    if engine == "phrase":
        if asr is None:
            raise ValueError("the phrase engine needs the loaded speech model (asr=...)")
        return WakeGate(PhraseSpotter(asr, config.phrase), phrase=config.phrase,
                        threshold=config.threshold, early_spots=early_spots)
    if engine == "openwakeword":
        (notice or _print_notice)(OPENWAKEWORD_LICENSE_NOTICE)
        return WakeGate(OpenWakeWordSpotter(config.phrase, models=models), phrase=config.phrase,
                        threshold=config.threshold)
    if engine == "off":
        return WakeGate(None, phrase=config.phrase, threshold=config.threshold)
    raise BadInputError(
        f"unknown wake engine {config.engine!r} (choose from: {', '.join(ENGINES)})"
    )


def _print_notice(text: str) -> None:
    print(text, file=sys.stderr)
