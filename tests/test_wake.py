"""Wake phrase and push-to-talk on real speech: detection, non-detection, the gate."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from support.speech import compose, speak, write_wav

from glasses_agent.config import Config, WakeConfig
from glasses_agent.edge.sources import FileAudioSource
from glasses_agent.edge.speech.asr import WhisperAsr
from glasses_agent.edge.speech.pipeline import build_listener, run_source
from glasses_agent.edge.speech.text import word_error_rate
from glasses_agent.edge.speech.wake import (
    OPENWAKEWORD_LICENSE_NOTICE,
    SECOND_CHANCE_MARGIN,
    make_wake_gate,
    phrase_score,
    strip_wake_phrase,
)
from glasses_agent.errors import BadInputError
from glasses_agent.frames import ButtonPressed, Frame, Transcript, Utterance, WakeDetected

# Speech without the wake phrase, confusable starts included. Measured with the
# default engine (phrase, forced-phrase score, threshold 0.5): 0 false accepts on
# these 14, and 0 of 1008 in the measurement in docs/hearing.md (40 sentences x 9
# espeak-ng and flite voices x 2-3 speaking rates).
NEGATIVES = [
    "my glasses are on the kitchen table",
    "these glasses are really dirty",
    "hey, what time is it?",
    "hey Jessica, pass me the salt please",
    "the classes start at nine tomorrow",
    "he glances at the map",
    "hey guys, look at this",
    "I need new sunglasses",
    "a glass of water please",
    "hello there, how are you?",
    "okay, let's go to the station",
    "pass the glasses to your left",
    "her glasses fell off",
    "I hate classes on mondays",
]
FALSE_ACCEPTS_ALLOWED = 0
DEFAULT = Config()


def _listen(asr: WhisperAsr, path: Path, *, config: Config = DEFAULT,
            taps_s: Sequence[float] = ()) -> list[Frame]:
    def frames() -> Iterator[Frame]:
        pending = sorted(taps_s)
        for chunk in FileAudioSource(path):
            while pending and pending[0] <= chunk.timestamp_s:
                yield ButtonPressed(timestamp_s=pending.pop(0))
            yield chunk

    return list(run_source(build_listener(config, asr=asr), frames()))


def _of(frames: Sequence[Frame], kind: type) -> list[Frame]:
    return [f for f in frames if isinstance(f, kind)]


def test_phrase_score() -> None:
    assert phrase_score("Hey glasses, what is this?", "hey glasses") == (1.0, 2)
    assert phrase_score("Hey, glasses!", "hey glasses")[0] == 1.0
    assert phrase_score("Oh, hey glasses, what is this?", "hey glasses") == (1.0, 3)
    assert phrase_score("Hey classes, read this", "hey glasses")[0] == pytest.approx(6 / 7)
    assert phrase_score("He classes", "hey glasses")[0] == pytest.approx(2 / 3 * 6 / 7)
    assert phrase_score("Heyglasses, read this", "hey glasses")[0] == 1.0
    for text in ("My glasses are dirty", "These glasses", "Hey, what time is it",
                 "Heavy classes this term", "Hey guys", "What am I looking at, hey glasses",
                 "He glides him up to the map"):
        assert phrase_score(text, "hey glasses")[0] < 0.5, text
    assert phrase_score("", "hey glasses") == (0.0, 0)


def test_strip_wake_phrase() -> None:
    assert strip_wake_phrase("Hey glasses, what am I looking at?", "hey glasses") == (
        "what am I looking at?")
    assert strip_wake_phrase("Oh, hey glasses. Read this.", "hey glasses") == "Read this."
    assert strip_wake_phrase("Read this sign.", "hey glasses") == "Read this sign."
    assert strip_wake_phrase("Hey glasses.", "hey glasses") == ""


def test_the_phrase_opens_an_utterance(asr: WhisperAsr, tmp_path: Path) -> None:
    questions = [("hey glasses, what am I looking at?", "en-us"),
                 ("hey glasses, how much is this?", "en-gb")]
    audio, truth = compose([0.6, speak(*questions[0]), 1.5, speak(*questions[1]), 1.0])
    frames = _listen(asr, write_wav(tmp_path / "q.wav", audio))
    wakes = _of(frames, WakeDetected)
    assert len(wakes) == 2
    for wake, (start_s, _) in zip(wakes, truth, strict=True):
        assert isinstance(wake, WakeDetected) and wake.phrase == "hey glasses"
        assert wake.score >= 0.5
        # announced within 2.3 s of the speech start (a 2 s window, or the segment's end)
        assert start_s < wake.timestamp_s <= start_s + 2.3
    utterances = _of(frames, Utterance)
    assert [u.trigger for u in utterances if isinstance(u, Utterance)] == ["wake", "wake"]
    transcripts = _of(frames, Transcript)
    assert len(transcripts) == 2
    for transcript, (text, _) in zip(transcripts, questions, strict=True):
        assert isinstance(transcript, Transcript)
        assert word_error_rate(text, transcript.text) <= 0.2, transcript.text


def test_a_bare_phrase_then_the_question(asr: WhisperAsr, tmp_path: Path) -> None:
    audio, _ = compose([0.6, speak("hey glasses"), 1.2, speak("read this sign for me"), 1.0])
    frames = _listen(asr, write_wav(tmp_path / "q.wav", audio))
    assert len(_of(frames, WakeDetected)) == 1
    [transcript] = _of(frames, Transcript)
    assert isinstance(transcript, Transcript)
    assert word_error_rate("read this sign for me", transcript.text) <= 0.2, transcript.text
    [utterance] = _of(frames, Utterance)
    assert isinstance(utterance, Utterance) and utterance.trigger == "wake"


def test_speech_without_the_phrase_is_not_for_us(asr: WhisperAsr, tmp_path: Path) -> None:
    parts: list[float | np.ndarray] = [0.5]
    for sentence in NEGATIVES:
        parts += [speak(sentence), 1.0]
    audio, truth = compose(parts)
    config = Config()
    pipeline = build_listener(config, asr=asr)
    frames = list(run_source(pipeline, FileAudioSource(write_wav(tmp_path / "n.wav", audio))))
    gate = pipeline.stages[1]
    # once per segment, twice where a pause's spotting did not wake (a second chance)
    assert len(NEGATIVES) <= gate.spotter.calls <= 2 * len(NEGATIVES)  # type: ignore[attr-defined]
    false_accepts = len(_of(frames, WakeDetected))
    assert false_accepts <= FALSE_ACCEPTS_ALLOWED
    assert _of(frames, Utterance) == [] and _of(frames, Transcript) == []
    assert len(truth) == len(NEGATIVES)


def test_a_segment_not_woken_at_its_pause_is_spotted_again_on_a_longer_window(
        asr: WhisperAsr, tmp_path: Path) -> None:
    # The spotting at a pause sees only the speech before it; a voice Whisper mishears there
    # ("Take glasses.", 0.46, flite slt) may be heard on more: a second chance, not a second
    # bar, for a score within SECOND_CHANCE_MARGIN of the threshold (measured in
    # docs/hearing.md). Speech without the phrase scores far under it: raising the bar to
    # put it within the margin, the segment is spotted twice; at the default bar, once.
    first, rest = speak("so I was thinking"), speak("we could leave a little earlier tomorrow")
    audio, _ = compose([0.6, first, 0.4, rest, 1.2])
    path = write_wav(tmp_path / "p.wav", audio)
    calls = []
    for threshold in (SECOND_CHANCE_MARGIN, DEFAULT.wake.threshold):
        config = dataclasses.replace(
            DEFAULT, wake=dataclasses.replace(DEFAULT.wake, threshold=threshold))
        pipeline = build_listener(config, asr=asr)
        frames = list(run_source(pipeline, FileAudioSource(path)))
        gate = pipeline.stages[1]
        assert _of(frames, WakeDetected) == [] and _of(frames, Transcript) == []
        assert gate.last_score < SECOND_CHANCE_MARGIN  # type: ignore[attr-defined]
        calls.append(gate.spotter.calls)  # type: ignore[attr-defined]
    # one segment (the 0.4 s pause is inside it): spotted at its pause, then again
    assert calls == [2, 1]


def test_a_tap_opens_an_utterance_without_the_phrase(asr: WhisperAsr, tmp_path: Path) -> None:
    audio, truth = compose([1.0, speak("what time is it?"), 1.0])
    path = write_wav(tmp_path / "t.wav", audio)
    assert _of(_listen(asr, path), Transcript) == []
    frames = _listen(asr, path, taps_s=[0.5])
    [utterance] = _of(frames, Utterance)
    assert isinstance(utterance, Utterance) and utterance.trigger == "button"
    [transcript] = _of(frames, Transcript)
    assert isinstance(transcript, Transcript)
    assert word_error_rate("what time is it", transcript.text) <= 0.25, transcript.text
    assert abs(transcript.start_s - truth[0][0]) <= 0.15


def test_engine_off_is_push_to_talk_only(asr: WhisperAsr, tmp_path: Path) -> None:
    audio, _ = compose([0.6, speak("hey glasses, what am I looking at?"), 1.0])
    path = write_wav(tmp_path / "q.wav", audio)
    off = dataclasses.replace(Config(), wake=WakeConfig(engine="off"))
    assert _of(_listen(asr, path, config=off), Transcript) == []
    assert len(_of(_listen(asr, path, config=off, taps_s=[0.2]), Transcript)) == 1


def test_openwakeword_is_opt_in_and_states_its_license(tmp_path: Path) -> None:
    notices: list[str] = []
    config = WakeConfig(engine="openwakeword", phrase="hey jarvis")
    gate = make_wake_gate(config, notice=notices.append)
    assert notices == [OPENWAKEWORD_LICENSE_NOTICE]
    assert "CC BY-NC-SA 4.0" in notices[0] and "non-commercial" in notices[0]

    def wakes(text: str) -> int:
        gate.spotter.reset()  # type: ignore[union-attr]
        audio, _ = compose([1.0, speak(text), 1.0])
        frames = [f2 for chunk in FileAudioSource(write_wav(tmp_path / "w.wav", audio))
                  for f2 in gate.process(chunk, chunk.timestamp_s)]
        return len(_of(frames, WakeDetected))

    assert wakes("hey jarvis, what time is it?") == 1
    assert wakes("hey glasses, what time is it?") == 0
    with pytest.raises(BadInputError, match="no model for 'hey glasses'"):
        make_wake_gate(WakeConfig(engine="openwakeword"), notice=notices.append)
    with pytest.raises(BadInputError, match="unknown wake engine"):
        make_wake_gate(WakeConfig(engine="alexa"))


@pytest.mark.skipif(shutil.which("flite") is None,
                    reason="flite is not installed (scripts/setup.sh installs it)")
def test_voices_whisper_mishears(asr: WhisperAsr, tmp_path: Path) -> None:
    # Whisper tiny.en transcribes kal's "hey glasses" as "I hate glasses" (scored 0.33 by
    # the letters, 0.58-0.65 forced): the forced phrase still scores above the threshold,
    # and confusables from flite's voices do not.
    positives = [("hey glasses, what am I looking at?", "kal"),
                 ("hey glasses, how much is this?", "kal")]
    negatives = [("I hate classes on mondays", "kal"), ("her glasses fell off", "slt"),
                 ("hey guys, look at this", "rms")]
    for cases, expected in ((positives, len(positives)), (negatives, 0)):
        parts: list[float | np.ndarray] = [0.5]
        for text, voice in cases:
            parts += [speak(text, voice), 1.5]
        audio, _ = compose(parts)
        frames = _listen(asr, write_wav(tmp_path / "f.wav", audio))
        assert len(_of(frames, WakeDetected)) == expected, cases
