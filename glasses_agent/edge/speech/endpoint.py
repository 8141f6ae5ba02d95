"""Endpointing: a state machine from per-chunk speech probabilities to utterances.

It holds no model and reads no clock. Each call gets a chunk's audio, its
timestamp and its speech probability, plus ``now_s`` (the runtime's time, used
for the push-to-talk timeout). Decisions about speech and silence are made on
audio time (the chunks' own timestamps), so a file gives the same utterances
however fast it is read, and a test drives it with a ``ManualClock``.

    idle --p >= threshold--> onset --speech >= min_speech_s--> speech (SpeechStarted)
    onset --silence >= min_silence_s--> idle (a blip: nothing emitted)
    speech --silence >= min_silence_s or length >= max_utterance_s--> idle
           (SpeechEnded, then Utterance with pre-roll and a short trailing pad)

Hysteresis as in Silero's own iterator: speech starts at ``threshold`` and
continues while the probability stays above ``threshold - 0.15``; the reported
end of speech is the end of the last chunk at or above ``threshold`` (Silero's
probability decays for a chunk or two after the last sound).

With ``pause_s`` set (the always-on listener), speech that stays below ``threshold``
for that long emits ``SpeechPaused`` with the utterance as it would be if the turn
ended there (a candidate end: the recognizer may start on it at once), and speech that
comes back (at ``threshold``) before the hangover emits ``SpeechResumed``. A pause is
counted from the last chunk at ``threshold``, not from the last voiced one: Silero's
probability decays for a chunk or two after the last sound, and the wearer should
not wait for that. ``min_silence_s`` (the hangover) then
bounds how long a pause inside one turn can be; when a turn ends earlier is decided
after the wake gate (``speech/turn.py``), where the transcript is known.

A temple tap (``press``) arms push-to-talk: the next speech, however short, opens
an utterance at once (no ``min_speech_s``) and the utterance is marked
``trigger="button"``; with no speech within ``button_timeout_s`` the tap lapses.
A tap during speech marks the utterance in progress.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

import numpy as np

from glasses_agent.config import VadConfig
from glasses_agent.errors import BadInputError
from glasses_agent.frames import (
    FloatArray,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Utterance,
)

__all__ = ["BUTTON_TIMEOUT_S", "HYSTERESIS", "TRAILING_PAD_S", "Endpointer"]

# Audio kept after the last speech chunk in an utterance: Whisper does better
# with a little silence after the last word.
TRAILING_PAD_S = 0.2
# A tap with no speech after it lapses after this many seconds.
BUTTON_TIMEOUT_S = 5.0
HYSTERESIS = 0.15
DEFAULT_VAD = VadConfig()

State = Literal["idle", "onset", "speech"]


class Endpointer:
    """Speech probabilities in, SpeechStarted / SpeechEnded / Utterance frames out."""

    def __init__(
        self,
        config: VadConfig = DEFAULT_VAD,
        *,
        sample_rate_hz: int = 16_000,
        trailing_pad_s: float = TRAILING_PAD_S,
        button_timeout_s: float = BUTTON_TIMEOUT_S,
        pause_s: float | None = None,
        min_silence_s: float | None = None,
    ) -> None:
        """``pause_s``: emit ``SpeechPaused``/``SpeechResumed`` (None: never);
        ``min_silence_s``: the hangover, instead of ``config.min_silence_s``."""
        if not 0.0 < config.threshold < 1.0:
            raise BadInputError(f"vad.threshold must be in (0, 1), not {config.threshold}")
        for name in ("min_speech_s", "min_silence_s", "preroll_s"):
            if getattr(config, name) < 0:
                raise BadInputError(f"vad.{name} must be 0 s or more, not {getattr(config, name)}")
        if config.max_utterance_s <= config.min_speech_s:
            raise BadInputError(f"vad.max_utterance_s must be longer than vad.min_speech_s "
                                f"({config.min_speech_s} s), not {config.max_utterance_s}")
        if pause_s is not None and pause_s <= 0:
            raise BadInputError(f"turn.pause_s must be more than 0 s, not {pause_s}")
        if min_silence_s is not None and min_silence_s < 0:
            raise BadInputError(f"the hangover must be 0 s or more, not {min_silence_s}")
        self.config = config
        self.min_silence_s = config.min_silence_s if min_silence_s is None else min_silence_s
        self.pause_s = pause_s
        self.sample_rate_hz = sample_rate_hz
        self.trailing_pad_s = trailing_pad_s
        self.button_timeout_s = button_timeout_s
        self.continue_threshold = max(0.01, config.threshold - HYSTERESIS)
        self.reset()

    def reset(self) -> None:
        self.state: State = "idle"
        self._chunks: deque[tuple[float, FloatArray]] = deque()
        self._speech_start_s = 0.0
        self._last_speech_end_s = 0.0
        self._last_voiced_s = 0.0
        self._speech_s = 0.0
        self._audio_end_s = 0.0
        self._trigger: Literal["vad", "button"] = "vad"
        self._armed_at_s: float | None = None
        self._paused = False

    @property
    def armed(self) -> bool:
        """Whether a tap is waiting for speech."""
        return self._armed_at_s is not None

    def press(self, timestamp_s: float, now_s: float) -> list[Frame]:
        """A temple tap at ``timestamp_s``: the next speech (or the current one) is for us."""
        if self.state == "speech":
            self._trigger = "button"
            return []
        self._armed_at_s = timestamp_s
        if self.state == "onset":
            return self._open(self._speech_start_s, trigger="button")
        return []

    def push(self, start_s: float, samples: FloatArray, probability: float,
             now_s: float) -> list[Frame]:
        """One chunk of audio starting at ``start_s`` with its speech probability."""
        duration_s = len(samples) / self.sample_rate_hz
        end_s = start_s + duration_s
        self._chunks.append((start_s, samples))
        self._audio_end_s = end_s
        if self._armed_at_s is not None and self.state == "idle" and (
            now_s - self._armed_at_s >= self.button_timeout_s
        ):
            self._armed_at_s = None
        out: list[Frame] = []
        cfg = self.config
        if self.state == "idle":
            if probability >= cfg.threshold:
                self.state = "onset"
                self._speech_start_s = start_s
                self._last_speech_end_s = end_s
                self._last_voiced_s = end_s
                self._speech_s = duration_s
                if self._armed_at_s is not None:
                    out.extend(self._open(start_s, trigger="button"))
                elif self._speech_s >= cfg.min_speech_s:
                    out.extend(self._open(start_s, trigger="vad"))
        elif self.state == "onset":
            if probability >= self.continue_threshold:
                self._last_voiced_s = end_s
                if probability >= cfg.threshold:
                    self._last_speech_end_s = end_s
                self._speech_s += duration_s
                if self._speech_s >= cfg.min_speech_s:
                    out.extend(self._open(self._speech_start_s, trigger="vad"))
            elif end_s - self._last_voiced_s >= self.min_silence_s:
                self.state = "idle"
        elif self.state == "speech":
            if probability >= cfg.threshold:
                self._last_speech_end_s = end_s
                if self._paused:
                    self._paused = False
                    out.append(SpeechResumed(timestamp_s=start_s, start_s=self._speech_start_s))
            if probability >= self.continue_threshold:
                self._last_voiced_s = end_s
            if end_s - self._last_voiced_s >= self.min_silence_s:
                out.extend(self._close(self._last_speech_end_s))
            elif end_s - self._speech_start_s >= cfg.max_utterance_s:
                out.extend(self._close(end_s))
            elif (self.pause_s is not None and not self._paused
                  and end_s - self._last_speech_end_s >= self.pause_s - 1e-9):
                self._paused = True
                out.append(self._pause())
        if self.state == "idle":
            self._trim()
        return out

    def flush(self, now_s: float) -> list[Frame]:
        """End of input: close an utterance in progress (a short onset is dropped)."""
        out: list[Frame] = []
        if self.state == "speech":
            out = self._close(self._last_speech_end_s)
        self.state = "idle"
        self._paused = False
        self._armed_at_s = None
        self._trim()
        return out

    def _open(self, speech_start_s: float, *, trigger: Literal["vad", "button"]) -> list[Frame]:
        self.state = "speech"
        self._trigger = trigger
        self._armed_at_s = None
        return [SpeechStarted(timestamp_s=speech_start_s)]

    def _utterance(self, speech_end_s: float) -> Utterance:
        start_s = self._speech_start_s - self.config.preroll_s
        end_s = min(self._audio_end_s, speech_end_s + self.trailing_pad_s)
        samples, start_s = self._slice(start_s, end_s)
        return Utterance(start_s=start_s, end_s=start_s + len(samples) / self.sample_rate_hz,
                         samples=samples, sample_rate_hz=self.sample_rate_hz,
                         trigger=self._trigger)

    def _pause(self) -> SpeechPaused:
        return SpeechPaused(timestamp_s=self._last_speech_end_s, start_s=self._speech_start_s,
                            utterance=self._utterance(self._last_speech_end_s))

    def _close(self, speech_end_s: float) -> list[Frame]:
        utterance = self._utterance(speech_end_s)
        self.state = "idle"
        self._paused = False
        return [SpeechEnded(timestamp_s=speech_end_s, start_s=self._speech_start_s), utterance]

    def _slice(self, start_s: float, end_s: float) -> tuple[FloatArray, float]:
        """The kept audio between ``start_s`` and ``end_s`` (clamped to what is kept)."""
        first_s = self._chunks[0][0]
        audio = np.concatenate([samples for _, samples in self._chunks])
        begin = max(0, round((start_s - first_s) * self.sample_rate_hz))
        stop = max(begin, min(len(audio), round((end_s - first_s) * self.sample_rate_hz)))
        return np.ascontiguousarray(audio[begin:stop]), first_s + begin / self.sample_rate_hz

    def _trim(self) -> None:
        """Idle: keep only the pre-roll (plus one chunk) for the next utterance."""
        keep_from_s = self._audio_end_s - self.config.preroll_s
        while len(self._chunks) > 1:
            start_s, samples = self._chunks[0]
            if start_s + len(samples) / self.sample_rate_hz > keep_from_s:
                break
            self._chunks.popleft()
