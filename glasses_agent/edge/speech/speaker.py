"""An answer, spoken as it streams: text deltas -> sentences -> TTS -> the speaker.

``Speaker.say`` takes the answer's text as it arrives; each sentence, once whole,
is synthesized and queued on the sink at once, so the first sentence plays
while the rest of the answer is still coming. ``stop`` (barge-in) silences the
sink and says how many characters of the answer the wearer actually heard: the
sentences played to the end, and the played share of the one cut off.

Synchronous. Given a ``clock``, a sentence is queued when its synthesis ends, as
on a device (the engine takes tens of milliseconds a sentence, and the played-time
accounting, the echo canceller's reference and the first-audio latency all count
from when the sound really starts); without one, at the ``now_s`` passed (a unit
test's timeline). A slow engine (Piper, about 0.1 s a sentence) belongs on a
worker thread, which the runtime chooses.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from glasses_agent.clock import Clock
from glasses_agent.edge.speech.playback import AudioSink
from glasses_agent.edge.speech.tts import SentenceSplitter, TtsEngine

__all__ = ["Speaker", "Spoken"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Spoken:
    """One sentence on the speaker: its characters in the answer and its samples on the sink."""

    text: str
    char_start: int
    char_end: int
    sample_start: int
    sample_end: int


class Speaker:
    """Speaks one answer at a time on ``sink`` with ``tts`` (see the module docstring)."""

    def __init__(self, tts: TtsEngine, sink: AudioSink, *, clock: Clock | None = None,
                 on_sentence: Callable[[str, float, float, float], None] | None = None) -> None:
        if tts.sample_rate_hz != sink.sample_rate_hz:
            raise ValueError(f"the engine speaks at {tts.sample_rate_hz} Hz, the sink plays "
                             f"{sink.sample_rate_hz} Hz")
        self.tts = tts
        self.sink = sink
        self.clock = clock
        self._splitter = SentenceSplitter()
        self._spoken: list[Spoken] = []
        self._answer_chars = 0
        self.first_audio_s: float | None = None
        # Told of each sentence queued: (text, now_s, synthesis ms, duration s) (a recorder).
        self.on_sentence = on_sentence

    def begin(self) -> None:
        """A new answer: forget the last one's sentences (the sink keeps playing them)."""
        self._splitter = SentenceSplitter()
        self._spoken = []
        self._answer_chars = 0
        self.first_audio_s = None

    def say(self, delta: str, now_s: float) -> int:
        """Take more of the answer; speak every sentence it completes. Returns how many
        sentences were queued."""
        self._answer_chars += len(delta)
        return self._speak(self._splitter.push(delta), now_s)

    def finish(self, now_s: float) -> int:
        """The answer is complete: speak what is left of it."""
        return self._speak(self._splitter.flush(), now_s)

    def _speak(self, sentences: list[tuple[int, str]], now_s: float) -> int:
        for start, text in sentences:
            began = time.perf_counter()
            pcm = self.tts.synthesize(text)
            synth_ms = (time.perf_counter() - began) * 1000
            if not len(pcm):
                continue
            if self.clock is not None:
                now_s = max(now_s, self.clock.now_s())  # synthesis took time
            first = self.sink.queued()
            self.sink.play(np.asarray(pcm, dtype=np.float32), now_s)
            if self.first_audio_s is None:
                self.first_audio_s = now_s
            self._spoken.append(Spoken(text=text, char_start=start,
                                       char_end=start + len(text), sample_start=first,
                                       sample_end=first + len(pcm)))
            if self.on_sentence is not None:
                self.on_sentence(text, now_s, synth_ms, len(pcm) / self.sink.sample_rate_hz)
        return len(sentences)

    def speaking(self, now_s: float) -> bool:
        return self.sink.busy(now_s)

    def heard_chars(self, now_s: float) -> int:
        """Characters of this answer the wearer has heard by ``now_s``."""
        played = self.sink.played(now_s)
        heard = 0
        for part in self._spoken:
            if played >= part.sample_end:
                heard = part.char_end
            elif played > part.sample_start:
                share = (played - part.sample_start) / (part.sample_end - part.sample_start)
                heard = part.char_start + int(share * (part.char_end - part.char_start))
                break
            else:
                break
        return heard

    def stop(self, now_s: float) -> int:
        """Barge-in: silence now; the characters of the answer that were heard."""
        heard = self.heard_chars(now_s)
        self.sink.stop(now_s)
        self._splitter = SentenceSplitter()
        return heard
