"""Silero VAD on real speech, and the endpointing state machine on a manual clock."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from support.speech import RATE_HZ, compose, speak, with_noise, write_wav

from edge_models.registry import get_spec
from glasses_agent.clock import ManualClock
from glasses_agent.config import VadConfig
from glasses_agent.edge.sources import FileAudioSource
from glasses_agent.edge.speech.endpoint import Endpointer
from glasses_agent.edge.speech.pipeline import run_source
from glasses_agent.edge.speech.vad import SileroVad, VadStage, load_vad_session
from glasses_agent.errors import BadInputError
from glasses_agent.frames import (
    AudioChunk,
    ButtonPressed,
    Frame,
    SpeechEnded,
    SpeechPaused,
    SpeechResumed,
    SpeechStarted,
    Utterance,
)
from glasses_agent.stages import Pipeline

TOLERANCE_S = 0.150
CHUNK_S = 512 / RATE_HZ
DEFAULT_VAD = VadConfig()


@pytest.fixture(scope="module")
def session() -> object:
    return load_vad_session()


def _segments(frames: Sequence[Frame]) -> list[tuple[float, float]]:
    return [(f.start_s, f.timestamp_s) for f in frames if isinstance(f, SpeechEnded)]


def _run_file(session: object, path: Path, config: VadConfig = DEFAULT_VAD) -> list[Frame]:
    stage = VadStage(SileroVad(session), Endpointer(config))
    return list(run_source(Pipeline([stage]), FileAudioSource(path)))


def test_the_registered_model_is_the_declared_file(session: object) -> None:
    spec = get_spec("silero_vad")
    assert spec.resource == "faster_whisper:assets/silero_vad_v6.onnx"
    assert "MIT" in spec.license
    names = [i.name for i in session.get_inputs()]  # type: ignore[attr-defined]
    assert names == ["input", "h", "c"]


def test_probabilities_separate_speech_from_silence(session: object) -> None:
    vad = SileroVad(session)
    speech = speak("read this sign for me please")
    silence = np.zeros(RATE_HZ, dtype=np.float32)
    audio = np.concatenate([silence, speech])
    probs = [vad(audio[i:i + 512]) for i in range(0, len(audio) - 511, 512)]
    first_speech = int(RATE_HZ / 512) + 4
    assert max(probs[:first_speech - 6]) < 0.1
    assert np.mean(np.array(probs[first_speech:first_speech + 20]) > 0.5) > 0.8
    vad.reset()
    assert vad(silence[:512]) < 0.1


CASES = {
    "question": ([1.0, "hey glasses, what am I looking at?", 1.0], None),
    "two utterances": ([0.8, "what time is it?", 1.5, ("read this sign for me please", "en-gb"),
                        1.0], None),
    "slow female voice": ([0.5, ("remember where I parked the car", "en-us+f3", 120), 1.2], None),
    "noisy (10 dB SNR)": ([1.0, "hey glasses, what am I looking at?", 1.0], 10.0),
}


def _make(parts: list[object]) -> list[float | np.ndarray]:
    out: list[float | np.ndarray] = []
    for part in parts:
        if isinstance(part, float):
            out.append(part)
        elif isinstance(part, str):
            out.append(speak(part))
        else:
            assert isinstance(part, tuple)
            out.append(speak(*part))
    return out


@pytest.mark.parametrize("case", CASES)
def test_segments_match_where_the_speech_is(session: object, tmp_path: Path, case: str) -> None:
    parts, snr_db = CASES[case]
    audio, truth = compose(_make(parts))
    if snr_db is not None:
        audio = with_noise(audio, snr_db)
    frames = _run_file(session, write_wav(tmp_path / "a.wav", audio))
    found = _segments(frames)
    assert len(found) == len(truth), (found, truth)
    for (start_s, end_s), (true_start_s, true_end_s) in zip(found, truth, strict=True):
        assert abs(start_s - true_start_s) <= TOLERANCE_S, (found, truth)
        assert abs(end_s - true_end_s) <= TOLERANCE_S, (found, truth)
    utterances = [f for f in frames if isinstance(f, Utterance)]
    assert len(utterances) == len(truth)
    for utterance, (true_start_s, true_end_s) in zip(utterances, truth, strict=True):
        # pre-roll before, a short pad after, and the samples match the times
        assert utterance.start_s <= true_start_s - 0.1
        assert utterance.end_s >= true_end_s
        assert len(utterance.samples) == round((utterance.end_s - utterance.start_s) * RATE_HZ)
        begin = round(utterance.start_s * RATE_HZ)
        np.testing.assert_allclose(utterance.samples, audio[begin:begin + len(utterance.samples)],
                                   atol=1.01 / 32768)  # the file is 16-bit


def test_a_short_pause_does_not_split_an_utterance(session: object, tmp_path: Path) -> None:
    audio, truth = compose([0.6, speak("hey glasses"), 0.0, speak("what is this"), 0.8])
    assert 0.2 < truth[1][0] - truth[0][1] < 0.4  # espeak's own edges make the pause
    assert len(_segments(_run_file(session, write_wav(tmp_path / "a.wav", audio)))) == 1
    shorter_hangover = VadConfig(min_silence_s=0.15)
    two = _segments(_run_file(session, write_wav(tmp_path / "b.wav", audio), shorter_hangover))
    assert len(two) == 2


def test_odd_chunk_sizes_give_the_same_segments(session: object, tmp_path: Path) -> None:
    audio, _ = compose([0.7, speak("what am I looking at"), 0.9])
    path = write_wav(tmp_path / "a.wav", audio)
    expected = _segments(_run_file(session, path))
    stage = VadStage(SileroVad(session), Endpointer())
    odd = list(run_source(Pipeline([stage]), FileAudioSource(path, chunk_samples=300)))
    assert np.allclose(_segments(odd), expected, atol=1e-9)


# --- the state machine alone, on a manual clock -----------------------------------------


class Driver:
    """Feeds an Endpointer 32 ms chunks with given speech probabilities on a ManualClock."""

    def __init__(self, config: VadConfig = DEFAULT_VAD, **kwargs: float) -> None:
        self.endpointer = Endpointer(config, **kwargs)
        self.clock = ManualClock()
        self.events: list[tuple[float, Frame]] = []
        self.index = 0

    def feed(self, probability: float, seconds: float) -> None:
        for _ in range(round(seconds / CHUNK_S)):
            start_s = self.index * CHUNK_S
            samples = np.full(512, float(self.index), dtype=np.float32)  # chunk number as audio
            self.index += 1
            self.clock.set(start_s + CHUNK_S)
            now_s = self.clock.now_s()
            for event in self.endpointer.push(start_s, samples, probability, now_s):
                self.events.append((now_s, event))

    def press(self) -> None:
        now_s = self.clock.now_s()
        self.events += [(now_s, e) for e in self.endpointer.press(now_s, now_s)]

    def of(self, kind: type) -> list[tuple[float, Frame]]:
        return [(t, e) for t, e in self.events if isinstance(e, kind)]


def test_endpointing_times_on_a_manual_clock() -> None:
    d = Driver(VadConfig(min_speech_s=0.25, min_silence_s=0.5, preroll_s=0.3))
    d.feed(0.0, 1.024)         # 32 chunks of silence
    d.feed(0.9, 0.96)          # speech from 1.024 s to 1.984 s
    d.feed(0.4, 0.064)         # below threshold, above threshold - 0.15: still voiced
    d.feed(0.05, 1.024)        # silence
    [(started_at, started)] = d.of(SpeechStarted)
    assert isinstance(started, SpeechStarted)
    assert started.timestamp_s == pytest.approx(1.024)
    assert started_at == pytest.approx(1.024 + 8 * CHUNK_S)  # after min_speech (8 chunks)
    [(ended_at, ended)] = d.of(SpeechEnded)
    assert isinstance(ended, SpeechEnded)
    assert ended.timestamp_s == pytest.approx(1.984)  # the last chunk at or above threshold
    # the hangover counts from the last voiced chunk (2.048 s): 0.5 s, rounded up to a chunk
    assert ended_at == pytest.approx(2.048 + 16 * CHUNK_S)
    [(_, utterance)] = d.of(Utterance)
    assert isinstance(utterance, Utterance)
    assert utterance.start_s == pytest.approx(1.024 - 0.3, abs=1e-6)
    assert utterance.end_s == pytest.approx(1.984 + 0.2, abs=1e-6)
    assert utterance.trigger == "vad"
    # the audio is exactly the chunks in that span
    assert utterance.samples[0] == pytest.approx(int((1.024 - 0.3) / CHUNK_S))
    assert len(utterance.samples) == round((utterance.end_s - utterance.start_s) * RATE_HZ)


def test_pauses_and_resumes_on_a_manual_clock() -> None:
    """The listener's candidate ends: SpeechPaused once speech has stayed below the
    threshold for pause_s, SpeechResumed when it comes back, the hangover as given."""
    d = Driver(VadConfig(min_speech_s=0.25), pause_s=0.064, min_silence_s=1.0)
    d.feed(0.0, 0.32)
    d.feed(0.9, 0.64)           # speech from 0.32 s to 0.96 s
    d.feed(0.4, 0.032)          # voiced but under the threshold: the pause counts
    d.feed(0.05, 0.032)
    [(paused_at, paused)] = d.of(SpeechPaused)
    assert isinstance(paused, SpeechPaused)
    assert paused_at == pytest.approx(0.96 + 2 * CHUNK_S)
    assert paused.timestamp_s == pytest.approx(0.96) and paused.start_s == pytest.approx(0.32)
    # the utterance as it would be handed on: the pre-roll, the speech, the audio since
    assert paused.utterance.start_s == pytest.approx(0.32 - 0.3, abs=1e-6)
    assert paused.utterance.end_s == pytest.approx(0.96 + 2 * CHUNK_S, abs=1e-6)
    d.feed(0.05, 0.5)           # 0.56 s of silence: more than vad.min_silence_s, less than 1 s
    assert d.of(SpeechEnded) == [] and len(d.of(SpeechPaused)) == 1
    d.feed(0.9, 0.32)
    [(_, resumed)] = d.of(SpeechResumed)
    assert isinstance(resumed, SpeechResumed) and resumed.start_s == pytest.approx(0.32)
    d.feed(0.0, 1.1)
    assert len(d.of(SpeechPaused)) == 2
    [(ended_at, ended)] = d.of(SpeechEnded)
    assert isinstance(ended, SpeechEnded)
    assert ended_at - ended.timestamp_s == pytest.approx(1.0, abs=CHUNK_S)
    [(_, utterance)] = d.of(Utterance)
    assert isinstance(utterance, Utterance) and utterance.start_s == pytest.approx(0.02, abs=1e-6)


def test_no_pauses_unless_asked() -> None:
    d = Driver()
    d.feed(0.9, 0.64)
    d.feed(0.0, 0.3)
    d.feed(0.9, 0.3)
    d.feed(0.0, 1.0)
    assert d.of(SpeechPaused) == [] and d.of(SpeechResumed) == []
    assert len(d.of(Utterance)) == 1


def test_bad_settings_are_one_line_errors() -> None:
    """Out-of-range [vad] values used to give a ValueError traceback or odd utterances."""
    for bad, message in [({"threshold": 1.5}, "vad.threshold must be in"),
                         ({"min_silence_s": -1.0}, "vad.min_silence_s must be 0 s or more"),
                         ({"preroll_s": -0.3}, "vad.preroll_s must be 0 s or more"),
                         ({"max_utterance_s": 0.0}, "vad.max_utterance_s must be longer")]:
        with pytest.raises(BadInputError, match=message):
            Endpointer(VadConfig(**bad))  # type: ignore[arg-type]


def test_a_blip_shorter_than_min_speech_opens_nothing() -> None:
    d = Driver(VadConfig(min_speech_s=0.25))
    d.feed(0.0, 0.5)
    d.feed(0.9, 0.16)   # 5 chunks < 0.25 s
    d.feed(0.0, 1.0)
    d.endpointer.flush(d.clock.now_s())
    assert d.events == []


def test_pauses_shorter_than_the_hangover_keep_one_utterance() -> None:
    d = Driver(VadConfig(min_silence_s=0.5))
    d.feed(0.0, 0.32)
    d.feed(0.9, 0.64)
    d.feed(0.0, 0.384)   # < 0.5 s
    d.feed(0.9, 0.64)
    d.feed(0.0, 0.64)
    assert len(d.of(SpeechStarted)) == 1
    assert len(d.of(Utterance)) == 1
    d.feed(0.9, 0.64)    # after a full hangover: a second utterance
    d.feed(0.0, 0.64)
    assert len(d.of(Utterance)) == 2


def test_max_utterance_closes_a_long_one() -> None:
    d = Driver(VadConfig(max_utterance_s=2.0))
    d.feed(0.9, 5.0)
    closed = d.of(SpeechEnded)
    assert len(closed) == 2
    first = closed[0][1]
    assert isinstance(first, SpeechEnded)
    assert first.timestamp_s - first.start_s == pytest.approx(2.0, abs=CHUNK_S)


def test_flush_closes_an_open_utterance() -> None:
    d = Driver()
    d.feed(0.0, 0.5)
    d.feed(0.9, 1.0)
    assert d.of(Utterance) == []
    out = d.endpointer.flush(d.clock.now_s())
    assert [type(f) for f in out] == [SpeechEnded, Utterance]


def test_a_tap_opens_the_next_speech_at_once() -> None:
    d = Driver(VadConfig(min_speech_s=0.25))
    d.feed(0.0, 0.5)
    d.press()
    d.feed(0.0, 1.0)
    d.feed(0.9, 0.128)   # short ("yes"), below min_speech: opens because of the tap
    d.feed(0.0, 1.0)
    [(_, utterance)] = d.of(Utterance)
    assert isinstance(utterance, Utterance) and utterance.trigger == "button"


def test_a_tap_lapses_after_the_timeout() -> None:
    d = Driver(VadConfig(min_speech_s=0.25), button_timeout_s=2.0)
    d.press()
    d.feed(0.0, 2.5)     # the clock passes the timeout
    assert not d.endpointer.armed
    d.feed(0.9, 0.128)   # too short for the VAD alone
    d.feed(0.0, 1.0)
    assert d.of(Utterance) == []


def test_a_tap_during_speech_marks_that_utterance() -> None:
    d = Driver()
    d.feed(0.9, 0.5)
    d.press()
    d.feed(0.9, 0.5)
    d.feed(0.0, 1.0)
    [(_, utterance)] = d.of(Utterance)
    assert isinstance(utterance, Utterance) and utterance.trigger == "button"


def test_the_stage_passes_frames_and_takes_taps(session: object) -> None:
    stage = VadStage(SileroVad(session), Endpointer())
    chunk = AudioChunk(timestamp_s=0.0, samples=np.zeros(512, dtype=np.float32),
                       sample_rate_hz=RATE_HZ)
    assert stage.process(chunk, 0.032) == [chunk]
    tap = ButtonPressed(timestamp_s=0.04)
    assert stage.process(tap, 0.04) == [tap]
    assert stage.endpointer.armed
    with pytest.raises(ValueError, match="16000 Hz"):
        stage.process(AudioChunk(timestamp_s=0.1, samples=np.zeros(480, dtype=np.float32),
                                 sample_rate_hz=48_000), 0.1)
