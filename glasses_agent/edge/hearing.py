"""The runtime's ears: a thread that turns microphone audio into turns and barge-ins.

``HearingThread`` reads a source (a microphone, or a file paced as a microphone
would deliver it, or a file as fast as it reads with ``fast``), takes the
assistant's own voice out of it (``EchoStage``: the speaker's output is the
reference), and pushes it through the always-on listener (VAD and endpointing,
wake phrase or temple tap, end of turn and Whisper). What comes out goes to the
runtime's event loop through ``on_frame``.

While the assistant speaks, it also watches the VAD's per-chunk speech
probability: ``barge_in_min_speech_s`` of speech (two 32 ms chunks by default,
so that a cough or a click does not kill the answer) that stands
``barge_in_near_end_db`` above what the echo canceller expects our own voice to
leave (its near-end score, see ``speech/echo.py``) is a barge-in, reported at
once through ``on_barge_in`` with the speech's true start, without waiting for
the endpointer, and the wake gate is armed so that what the wearer says is
taken as the next question. The speaker is held before that (``AudioSink.hold``,
from this thread: no hop through the event loop) on the first chunk that counts as
speech, or that holds a sound's onset standing out of our own voice's echo
(``EchoStage.onset_db``: energy is there before the VAD, which needs 60-150 ms of a
word, calls it speech). When the VAD does not go on to call it speech (at the next
chunk, or ``ONSET_GRACE_S`` after an onset: a cough, a click, a door) the answer
plays on from where it was held.

The last line of the echo guard: a transcript of speech that lay wholly inside our own
playback (and its ``ECHO_TAIL_S``), where no barge-in found the wearer's voice, is our own
voice that got past the echo canceller: it is dropped (``echo_transcripts`` counts them),
never taken as a question. The wearer speaking over the answer barges in first.

Time inside the listener is the audio's own (each chunk's end), so a file gives
the same turns however fast it is read; ``to_wall_s`` maps it to the runtime
clock.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from glasses_agent.clock import Clock
from glasses_agent.edge.events import Tap
from glasses_agent.edge.speech.echo import AcousticPath, EchoCanceller
from glasses_agent.edge.speech.pipeline import flush_pipeline
from glasses_agent.edge.speech.playback import AudioSink
from glasses_agent.edge.speech.vad import VadStage
from glasses_agent.edge.speech.wake import WakeGate
from glasses_agent.frames import AudioChunk, ButtonPressed, Frame, SpeechResumed, Transcript
from glasses_agent.stages import Pipeline

__all__ = ["AudioTapStage", "BargeInWatch", "EchoStage", "HearingThread"]

logger = logging.getLogger("glasses_agent.hearing")

# Speech ending this long after our playback stopped still counts as lying inside it (the
# room's reverberation, the VAD's hangover).
ECHO_TAIL_S = 0.5

class EchoStage:
    """AudioChunk -> the same audio with the speaker's echo taken out (``EchoCanceller``).

    ``reference(start_s, samples)``: what the speaker played over that span (16 kHz).
    Chunks pass through untouched while nothing has been played lately; output
    chunks are whole 256-sample blocks, stamped with their own start. Each block's
    near-end score is kept a little while, for the barge-in watch (``near_end_db``).
    """

    _KEPT_BLOCKS = 32  # 0.5 s

    def __init__(self, reference: Callable[[float, int], np.ndarray],
                 canceller: EchoCanceller | None = None) -> None:
        self.reference = reference
        self.canceller = canceller or EchoCanceller()
        self._start_s: float | None = None  # the start of the samples the canceller holds
        self._scores: collections.deque[tuple[float, float, bool]] = collections.deque(
            maxlen=self._KEPT_BLOCKS)

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if not isinstance(frame, AudioChunk):
            return [frame]
        if self._start_s is None:
            self._start_s = frame.timestamp_s
        ref = self.reference(frame.timestamp_s, len(frame.samples))
        cleaned = self.canceller.process(frame.samples, ref)
        if not len(cleaned):
            return []
        block_s = self.canceller.block / frame.sample_rate_hz
        for i, (score, settled) in enumerate(zip(self.canceller.near_end_db,
                                                 self.canceller.settled, strict=True)):
            self._scores.append((self._start_s + i * block_s, score, settled))
        chunk = AudioChunk(timestamp_s=self._start_s, samples=cleaned,
                           sample_rate_hz=frame.sample_rate_hz)
        self._start_s += len(cleaned) / frame.sample_rate_hz
        return [chunk]

    def near_end_db(self, start_s: float, duration_s: float) -> float | None:
        """The mean near-end score of the blocks in [start_s, start_s + duration_s): how far
        the cleaned audio stands above what echo alone leaves; None if none is kept."""
        scores = [score for _, score, _ in self._blocks(start_s, duration_s)]
        return sum(scores) / len(scores) if scores else None

    def onset_db(self, start_s: float, duration_s: float) -> float | None:
        """How far a sound that is not ours stands out of our echo at its onset in
        [start_s, start_s + duration_s): the best, over two blocks in a row (the block just
        before the span and the span's own), of the lower near-end score of the two, among
        blocks where the canceller had settled (cancelling our voice well for a while just
        before). A lone block is not enough: what a filter too short for the room leaves
        of our voice comes in single bursts. None where it had not settled (the first
        tenths of a second of our voice, or the path just changed)."""
        end_s = start_s + duration_s - 1e-6
        pairs = [min(a[1], b[1]) for a, b in itertools.pairwise(self._scores)
                 if start_s - 1e-6 <= b[0] < end_s and a[2] and b[2]]
        return max(pairs) if pairs else None

    def _blocks(self, start_s: float, duration_s: float) -> list[tuple[float, float, bool]]:
        end_s = start_s + duration_s - 1e-6
        return [block for block in self._scores if start_s - 1e-6 <= block[0] < end_s]


class AudioTapStage:
    """Passes every frame on; tells ``tap`` of each audio chunk (what the listener hears)."""

    def __init__(self, tap: Tap) -> None:
        self.tap = tap

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, AudioChunk):
            self.tap.heard_audio(frame)
        return [frame]


class BargeInWatch:
    """The barge-in rule, per 32 ms VAD chunk while the assistant speaks: ``min_speech_s``
    of chunks that the VAD calls speech (``threshold``) and that stand ``near_end_db``
    above what our own voice's echo would leave (``EchoStage.near_end_db``; every chunk
    passes that test without an echo stage). ``update`` returns the speech's start (audio
    time) once, when the rule is met; ``reset`` when the assistant stops speaking. After
    each ``update``, ``voiced``: the chunk counted as speech; ``onset``: it holds a sound
    standing ``onset_db`` out of our echo (``EchoStage.onset_db``; never without an echo
    stage, or with ``onset_db`` None)."""

    CHUNK_S = 0.032

    def __init__(self, echo: EchoStage | None = None, *, min_speech_s: float = 0.064,
                 threshold: float = 0.5, near_end_db: float = 6.0,
                 onset_db: float | None = 10.0) -> None:
        self.echo = echo
        self.min_speech_s = min_speech_s
        self.threshold = threshold
        self.near_end_db = near_end_db
        self.onset_db = onset_db
        self._voiced_since: float | None = None
        self.fired = False
        self.voiced = False  # the last chunk counted as the wearer's speech
        self.onset = False  # the last chunk stood out of our own voice's echo (``onset_db``)

    def reset(self) -> None:
        self._voiced_since = None
        self.fired = False
        self.voiced = False
        self.onset = False

    def _near_end(self, start_s: float) -> bool:
        if self.echo is None:
            return True
        score = self.echo.near_end_db(start_s, self.CHUNK_S)
        return score is None or score >= self.near_end_db

    def _onset(self, start_s: float) -> bool:
        if self.echo is None or self.onset_db is None:
            return False
        peak = self.echo.onset_db(start_s, self.CHUNK_S)
        return peak is not None and peak >= self.onset_db

    def update(self, start_s: float, probability: float) -> float | None:
        self.onset = self._onset(start_s)
        self.voiced = probability >= self.threshold and self._near_end(start_s)
        if not self.voiced:
            self._voiced_since = None
            return None
        if self._voiced_since is None:
            self._voiced_since = start_s
        if self.fired or start_s + self.CHUNK_S - self._voiced_since < self.min_speech_s:
            return None
        self.fired = True
        return self._voiced_since


@dataclass(frozen=True, slots=True, kw_only=True)
class Heard:
    """A frame out of the listener, with the audio time it came out at and when (runtime
    clock) it did."""

    frame: Frame
    audio_s: float
    wall_s: float


class HearingThread:
    """See the module docstring. ``start()``; ``press()`` and ``speaking`` from any thread;
    ``stop()`` ends it (``done`` is set when the source is exhausted)."""

    ONSET_GRACE_S = 0.16  # a hold on a sound's onset waits this long for the VAD's speech

    def __init__(
        self,
        source: Iterable[AudioChunk],
        listener: Pipeline,
        *,
        clock: Clock,
        on_frame: Callable[[Heard], None],
        on_barge_in: Callable[[float, float], None],
        sink: AudioSink | None = None,
        fast: bool = False,
        live: bool = False,
        barge_in_min_speech_s: float = 0.064,
        barge_in_threshold: float = 0.5,
        barge_in_near_end_db: float = 6.0,
        follow_up_s: float = 6.0,
        tap: Tap | None = None,
    ) -> None:
        self.clock = clock
        self.tap = tap
        self._audio_s = 0.0  # the end of the last chunk taken in (audio time)
        self.fast = fast
        self.on_frame = on_frame
        self.on_barge_in = on_barge_in
        self.sink = sink
        self.follow_up_s = follow_up_s
        self.speaking = threading.Event()  # set by the runtime while the answer plays
        self.done = threading.Event()
        self._stop = threading.Event()
        self._buttons: queue.Queue[ButtonPressed] = queue.Queue()
        self._source = source
        self._live = live
        self._epoch: float | None = None  # runtime clock at audio time 0
        self._echo_path: AcousticPath | None = None
        self.error: BaseException | None = None
        stages = list(listener.stages)
        vad = next((s for s in stages if isinstance(s, VadStage)), None)
        self._gate = next((s for s in stages if isinstance(s, WakeGate)), None)
        if vad is not None:
            vad.on_probability = self._watch
        self._echo: EchoStage | None = None
        if sink is not None and not fast:  # fast: audio outruns the speaker; no echo to take
            self._echo = EchoStage(self._reference)
            stages.insert(0, self._echo)
        if tap is not None:  # the audio as the listener hears it: after the echo canceller
            stages.insert(1 if self._echo is not None else 0, AudioTapStage(tap))
        self.barge_in = BargeInWatch(self._echo, min_speech_s=barge_in_min_speech_s,
                                     threshold=barge_in_threshold,
                                     near_end_db=barge_in_near_end_db)
        self.pipeline = Pipeline(stages)
        self._thread = threading.Thread(target=self._run, name="hearing", daemon=True)
        self._held_s: float | None = None  # the speaker held since (runtime clock)
        self._hold_until_s = 0.0  # held at least until this chunk (audio time)
        self.holds_released = 0  # held for a chunk that was not followed by speech
        # Our playback as audio time spans, and the starts of the wearer's barge-ins (both
        # recent), for the transcripts of our own voice (see the module docstring).
        self._playing: collections.deque[list[float]] = collections.deque(maxlen=64)
        self._barge_starts: collections.deque[float] = collections.deque(maxlen=64)
        self._handed_end_s: float | None = None  # the end of the last transcript handed on
        self._reopened_s: float | None = None  # where speech resumed after it (a re-open)
        self.echo_transcripts = 0

    def to_wall_s(self, audio_s: float) -> float:
        """Audio time -> runtime clock (a live microphone's audio time is the clock's)."""
        if self._live or self._epoch is None:
            return audio_s
        return self._epoch + audio_s

    def start(self) -> HearingThread:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout_s: float | None = None) -> None:
        self._thread.join(timeout_s)

    def press(self, button: str = "tap") -> None:
        """A temple tap (push-to-talk), from any thread: it takes effect at the next chunk."""
        self._buttons.put(ButtonPressed(timestamp_s=0.0, button=button))  # type: ignore[arg-type]
        if self.tap is not None:
            self.tap.hearing_control("button", self._audio_s, button)

    def _reference(self, start_s: float, samples: int) -> np.ndarray:
        """What the speaker played over this span of audio (silence when nothing)."""
        assert self.sink is not None
        return self.sink.reference(self.to_wall_s(start_s), samples, 16_000)

    def add_echo(self, path: AcousticPath) -> None:
        """Simulate open-ear speakers next to the microphone: what the sink plays reaches
        the microphone through ``path`` (tests, the simulator). Before ``start()``."""
        self._echo_path = path

    def _with_echo(self, chunk: AudioChunk) -> AudioChunk:
        path, sink = self._echo_path, self.sink
        if path is None or sink is None:
            return chunk
        tail = len(path.impulse)
        n = len(chunk.samples)
        start = self.to_wall_s(chunk.timestamp_s) - tail / chunk.sample_rate_hz
        played = sink.reference(start, n + tail, chunk.sample_rate_hz)
        echo = path.apply(played)[tail:]
        return dataclasses.replace(chunk, samples=(chunk.samples + echo).astype(np.float32))

    def _chunks(self) -> Iterator[AudioChunk]:
        if self.fast or self._live:
            yield from self._source
            return
        # Paced: each chunk when a live microphone would deliver it, at its end time, audio
        # time 0 being the runtime clock's ``_epoch``.
        for chunk in self._source:
            if self._epoch is None:
                self._epoch = self.clock.now_s() - chunk.timestamp_s
            wait_s = self._epoch + chunk.timestamp_s + chunk.duration_s - self.clock.now_s()
            if wait_s > 0 and self._stop.wait(wait_s):
                return
            yield self._with_echo(chunk)

    def _run(self) -> None:
        audio_s = 0.0
        try:
            for chunk in self._chunks():
                if self._stop.is_set():
                    break
                if self._epoch is None:
                    self._epoch = self.clock.now_s() - chunk.timestamp_s
                audio_s = chunk.timestamp_s + chunk.duration_s
                self._audio_s = audio_s
                while not self._buttons.empty():
                    tap = self._buttons.get()
                    self._push(ButtonPressed(timestamp_s=chunk.timestamp_s, button=tap.button),
                               audio_s)
                self._push(chunk, audio_s)
            if not self._stop.is_set():
                for frame in flush_pipeline(self.pipeline, audio_s):
                    self._emit(frame, audio_s)
        except BaseException as exc:  # surfaced by the runtime: a thread must not die quietly
            self.error = exc
        finally:
            self.done.set()

    def _push(self, frame: Frame, audio_s: float) -> None:
        for out in self.pipeline.push(frame, audio_s):
            self._emit(out, audio_s)

    def _emit(self, frame: Frame, audio_s: float) -> None:
        if isinstance(frame, AudioChunk):
            return  # audio stays in the thread
        heard = Heard(frame=frame, audio_s=audio_s, wall_s=self.clock.now_s())
        if self.tap is not None:
            self.tap.listener_frame(frame, audio_s, heard.wall_s)
        if isinstance(frame, Transcript):
            if self._our_own_voice(frame):
                self.echo_transcripts += 1
                logger.info("dropped a transcript of our own voice: %r", frame.text[:60])
                return
            self._handed_end_s, self._reopened_s = frame.end_s, None
        elif (isinstance(frame, SpeechResumed) and self._reopened_s is None
              and self._handed_end_s is not None and frame.timestamp_s > self._handed_end_s):
            self._reopened_s = frame.timestamp_s
        self.on_frame(heard)

    def _our_own_voice(self, transcript: Transcript) -> bool:
        """Speech wholly inside our playback, with no barge-in of the wearer in it. For a
        revision (a turn re-opened when speech resumed), the speech after the transcript it
        revises: our own voice re-opening a turn must not replace the wearer's question."""
        if self._echo is None:
            return False  # no speaker next to this microphone (fast, or no sink)
        begin_s = transcript.start_s
        if transcript.revises:
            begin_s = max(begin_s, self._reopened_s or self._handed_end_s or begin_s)
        inside = any(start_s <= begin_s and transcript.end_s <= end_s + ECHO_TAIL_S
                     for start_s, end_s in self._playing)
        wearer = any(begin_s - 0.3 <= s <= transcript.end_s
                     for s in self._barge_starts)
        return inside and not wearer

    def _watch(self, start_s: float, probability: float) -> None:
        """Per 32 ms chunk (in this thread): the barge-in rule while speaking."""
        if self.tap is not None:
            self.tap.vad(start_s, probability)
        if not self.speaking.is_set():
            self.barge_in.reset()
            self._release()
            return
        if self._playing and self._playing[-1][1] >= start_s - 1e-6:
            self._playing[-1][1] = start_s + BargeInWatch.CHUNK_S
        else:
            self._playing.append([start_s, start_s + BargeInWatch.CHUNK_S])
        began_s = self.barge_in.update(start_s, probability)
        watch = self.barge_in
        if self._held_s is None:
            if (watch.voiced or watch.onset) and not watch.fired:
                self._hold()
                # the VAD lags a sound's onset by a few chunks: give it time to say speech
                self._hold_until_s = start_s + (0.0 if watch.voiced else self.ONSET_GRACE_S)
        elif not watch.voiced and start_s >= self._hold_until_s - 1e-6:
            self._release()  # no speech after all: a cough, a click
        if began_s is not None:
            if self._gate is not None:
                self._gate.arm(start_s + self.follow_up_s)  # what they say is for us
                if self.tap is not None:
                    self.tap.hearing_control("armed", start_s, start_s + self.follow_up_s)
            self._barge_starts.append(began_s)
            silenced_s = self._held_s if self._held_s is not None else self.clock.now_s()
            self._held_s = None  # the runtime stops what is held
            self.on_barge_in(self.to_wall_s(began_s), silenced_s)

    def _hold(self) -> None:
        """Speech over the answer, maybe: silence the speaker until the rule decides."""
        if self.sink is not None:
            self._held_s = self.clock.now_s()
            self.sink.hold(self._held_s)

    def _release(self) -> None:
        """It was not the wearer's speech after all: the answer plays on."""
        if self._held_s is not None and self.sink is not None:
            self._held_s = None
            self.holds_released += 1
            self.sink.release(self.clock.now_s())

    def expecting_question(self) -> bool:
        """The speech going on now will be taken as a question (no wake gate, or the gate
        armed or woken)."""
        return self._gate is None or self._gate.woken

    def arm_follow_up(self, until_audio_s: float) -> None:
        """Take the next utterance before ``until_audio_s`` as a question (a follow-up)."""
        if self._gate is not None:
            self._gate.arm(until_audio_s)
            if self.tap is not None:
                self.tap.hearing_control("armed", self._audio_s, until_audio_s)

    def audio_now_s(self) -> float:
        """The audio time that corresponds to the runtime clock's now."""
        if self._live or self._epoch is None:
            return self.clock.now_s()
        return self.clock.now_s() - self._epoch
