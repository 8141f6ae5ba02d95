"""Speaking: espeak-ng through pyttsx3 to PCM, sentences as an answer streams, the sinks,
the echo canceller. Real synthesis, real WAV files; time is an argument."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import soxr

from glasses_agent.config import TtsConfig
from glasses_agent.edge.speech.echo import AcousticPath, EchoCanceller
from glasses_agent.edge.speech.playback import SoundDeviceSink, WavFileSink
from glasses_agent.edge.speech.speaker import Speaker
from glasses_agent.edge.speech.tts import EspeakTts, SentenceSplitter, make_tts
from glasses_agent.errors import BadInputError, DeviceUnavailableError


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)) + 1e-20))


def test_espeak_speaks_every_time_not_only_the_first() -> None:
    # pyttsx3 2.99's own loop gave audio once per process; ours, every time.
    tts = EspeakTts()
    lengths = [len(tts.synthesize(t)) / tts.sample_rate_hz
               for t in ("It looks like an espresso.", "Second.", "And a third sentence here.")]
    assert all(length > 0.3 for length in lengths)
    assert lengths[2] > lengths[1]  # more words, more audio
    assert len(tts.synthesize("   ")) == 0


def test_voice_and_rate_are_settable_and_bad_ones_are_clear() -> None:
    text = "The museum is closed on Mondays."
    slow = EspeakTts(rate_wpm=120).synthesize(text)
    fast = EspeakTts(rate_wpm=260).synthesize(text)
    assert len(slow) > 1.5 * len(fast)
    british = EspeakTts(voice="en-gb").synthesize(text)  # a language code works too
    assert len(british) > 0
    with pytest.raises(BadInputError, match="not an espeak-ng voice"):
        EspeakTts(voice="no-such-voice")
    with pytest.raises(BadInputError, match="rate_wpm"):
        EspeakTts(rate_wpm=5)
    with pytest.raises(BadInputError, match="unknown tts engine"):
        make_tts(TtsConfig(engine="nope"))


def test_piper_is_opt_in_with_its_notice() -> None:
    # The setup does not install Piper (GPL-3.0, and the voice's terms): here it says what
    # to install; where someone installed it, it speaks (checked with both installed).
    notices: list[str] = []
    try:
        tts = make_tts(TtsConfig(engine="piper"), notice=notices.append)
    except BadInputError as exc:
        assert "pip install piper-tts" in str(exc)
    else:
        pcm = tts.synthesize("It looks like an espresso.")
        assert tts.sample_rate_hz == 22_050 and len(pcm) > 0.5 * tts.sample_rate_hz
        assert 0.05 < float(np.abs(pcm).max()) <= 1.0
    assert notices and "GPL-3.0" in notices[0] and "restrictive" in notices[0]


def test_sentences_come_out_as_the_answer_streams() -> None:
    splitter = SentenceSplitter()
    out: list[tuple[int, str]] = []
    for delta in ["The sign says EXIT", " 12. Main St. is to the", " left! It costs $3.99. Dr.",
                  " Who is in"]:
        out += splitter.push(delta)
    assert out == [(0, "The sign says EXIT 12."), (23, "Main St. is to the left!"),
                   (48, "It costs $3.99.")]
    assert splitter.flush() == [(64, "Dr. Who is in")]
    long = SentenceSplitter(max_chars=60).push("word, " * 30)
    assert long and all(len(text) <= 60 for _, text in long)  # no sentence end: cut at a comma


def test_the_first_sentence_plays_while_the_rest_streams_and_a_stop_says_what_was_heard(
        tmp_path: Path) -> None:
    tts = EspeakTts()
    out = tmp_path / "heard.wav"
    sink = WavFileSink(out, tts.sample_rate_hz, realtime=True)
    speaker = Speaker(tts, sink)
    speaker.begin()
    assert speaker.say("It looks like an espresso.", 0.0) == 0  # no space after it yet
    assert speaker.say(" It is ", 0.05) == 1  # the first sentence is whole: it plays now
    assert speaker.first_audio_s == 0.05 and speaker.speaking(0.1)
    speaker.say("made from strong coffee. You can drink it now.", 0.1)
    speaker.finish(0.1)
    first = len(tts.synthesize("It looks like an espresso.")) / tts.sample_rate_hz
    # Half-way through the second sentence, the wearer speaks: barge-in.
    at_s = 0.05 + first + 0.5
    heard = speaker.stop(at_s)
    assert len("It looks like an espresso.") < heard < len("It looks like an espresso. It is "
                                                          "made from strong coffee.")
    assert not speaker.speaking(at_s + 0.01)
    sink.close(at_s + 5.0)
    written, rate = soundfile.read(out, dtype="float32")
    assert rate == tts.sample_rate_hz
    assert abs(len(written) / rate - (at_s - 0.05)) < 0.02  # the file holds what was heard


def test_a_held_sink_is_silent_and_plays_on_from_where_it_was_held(tmp_path: Path) -> None:
    rate = 16_000
    answer = np.sin(np.arange(rate) * 0.05).astype(np.float32)  # 1 s
    sink = WavFileSink(tmp_path / "held.wav", rate, realtime=True)
    sink.play(answer, 0.0)
    sink.hold(0.4)  # a chunk of speech, maybe the wearer's
    assert sink.played(0.9) == int(0.4 * rate)  # nothing plays while held
    assert not sink.reference(0.5, 1600, rate).any()  # the echo canceller expects silence
    sink.release(1.0)  # it was a cough: the answer plays on from where it was
    assert sink.busy(1.5) and sink.played(1.5) == int(0.9 * rate)
    assert np.allclose(sink.reference(1.0, 1600, rate), answer[int(0.4 * rate):][:1600],
                       atol=1e-3)
    sink.close(2.0)
    written, _ = soundfile.read(tmp_path / "held.wav", dtype="float32")
    assert len(written) == rate  # nothing lost, nothing twice
    assert np.allclose(written, answer, atol=1e-4)


class _Watched:
    """The hearing thread's barge-in watch driven by hand: 3 s of answer playing into a
    real-time sink, the manual clock, the VAD's probability chunk by chunk."""

    RATE, CHUNK = 16_000, 0.032

    def __init__(self) -> None:
        from glasses_agent.clock import ManualClock
        from glasses_agent.edge.hearing import HearingThread
        from glasses_agent.stages import Pipeline

        self.clock = ManualClock()
        self.sink = WavFileSink(None, self.RATE, realtime=True)
        self.barges: list[tuple[float, float]] = []
        self.hearing = HearingThread(
            [], Pipeline([]), clock=self.clock, on_frame=lambda heard: None,
            on_barge_in=lambda start, silenced: self.barges.append((start, silenced)),
            sink=self.sink, fast=True)
        self.sink.play(np.full(3 * self.RATE, 0.1, dtype=np.float32), 0.0)
        self.hearing.speaking.set()

    def chunks(self, probabilities: list[float], at_s: float) -> None:
        for i, probability in enumerate(probabilities):
            self.clock.set(at_s + (i + 1) * self.CHUNK)  # a chunk is seen once all come in
            self.hearing._watch(at_s + i * self.CHUNK, probability)


def test_speech_over_the_answer_holds_it_at_once_and_a_cough_does_not_kill_it() -> None:
    watched = _Watched()
    rate, chunk, sink, hearing = watched.RATE, watched.CHUNK, watched.sink, watched.hearing
    watched.chunks([0.1, 0.9], 0.5)  # a cough: one chunk of "speech" holds the answer ...
    held_at = watched.clock.now_s()
    watched.chunks([0.2], held_at)  # ... and the next, not speech, lets it play on
    assert watched.barges == [] and hearing.holds_released == 1
    assert sink.played(held_at + chunk + 0.5) == pytest.approx((held_at + 0.5) * rate, abs=2)
    watched.chunks([0.8, 0.9, 0.95], 1.5)  # speech: silent after one chunk, stopped after two
    assert watched.barges == [(1.5, 1.5 + chunk)]
    # Silent since the first chunk of speech (the runtime stops it for good): the wearer
    # heard 1.5 s of answer, the cough's gap of one chunk shifting it.
    assert sink.played(5.0) == sink.played(1.6) == pytest.approx(1.5 * rate, abs=2)


def test_a_sounds_onset_holds_the_answer_until_the_vad_has_had_time_to_call_it() -> None:
    from glasses_agent.edge.hearing import HearingThread

    watched = _Watched()
    rate, chunk, sink, hearing = watched.RATE, watched.CHUNK, watched.sink, watched.hearing
    onsets: set[float] = set()  # where the echo stage would say a sound not ours begins
    hearing.barge_in._onset = lambda start_s: round(start_s, 3) in onsets  # type: ignore[method-assign]
    onsets.add(0.5)
    watched.chunks([0.1], 0.5)  # a sound's onset, the VAD not (yet) calling it speech: held
    assert sink.played(5.0) == pytest.approx(0.532 * rate, abs=2)
    grace_chunks = round(HearingThread.ONSET_GRACE_S / chunk)
    watched.chunks([0.1] * (grace_chunks - 1), 0.532)  # the VAD is given its time ...
    assert hearing.holds_released == 0
    watched.chunks([0.1], 0.5 + grace_chunks * chunk)  # ... and says no: a door, a click
    assert hearing.holds_released == 1 and watched.barges == []  # the answer plays on
    onsets.add(1.5)
    watched.chunks([0.2, 0.3, 0.8, 0.9], 1.5)  # speech: the VAD catches up while it is held
    assert watched.barges == [(1.564, 1.532)]  # silent since the onset, before the VAD's start
    released_s = 0.5 + (grace_chunks + 1) * chunk
    assert sink.played(5.0) == pytest.approx((0.532 + 1.532 - released_s) * rate, abs=2)


def test_a_transcript_of_speech_inside_our_playback_is_dropped_unless_the_wearer_barged_in(
        ) -> None:
    from glasses_agent.clock import ManualClock
    from glasses_agent.edge.hearing import HearingThread
    from glasses_agent.frames import Transcript
    from glasses_agent.stages import Pipeline

    rate, chunk = 16_000, 0.032
    clock = ManualClock()
    sink = WavFileSink(None, rate, realtime=True)
    out: list[str] = []
    hearing = HearingThread(  # not fast: a speaker next to the microphone, the echo stage
        [], Pipeline([]), clock=clock, on_barge_in=lambda start, silenced: None, sink=sink,
        on_frame=lambda heard: out.append(heard.frame.text))  # type: ignore[attr-defined]

    def play(from_s: float, probabilities: list[float]) -> None:
        hearing.speaking.set()
        for i, probability in enumerate(probabilities):
            clock.set(from_s + (i + 1) * chunk)
            hearing._watch(from_s + i * chunk, probability)
        hearing.speaking.clear()

    play(1.0, [0.1] * 40)  # our answer, 1.0-2.28 s, no speech of the wearer's
    hearing._emit(Transcript(text="I'm also...", start_s=1.5, end_s=2.6), 2.7)  # the echo
    hearing._emit(Transcript(text="What time is it?", start_s=3.0, end_s=4.0), 4.1)
    play(5.0, [0.1] * 10 + [0.9] * 10)  # the wearer speaks over the next answer
    hearing._emit(Transcript(text="Stop, what day is it?", start_s=5.3, end_s=5.9), 6.0)
    assert out == ["What time is it?", "Stop, what day is it?"]
    assert hearing.echo_transcripts == 1


def test_a_file_sink_without_realtime_writes_everything_at_once(tmp_path: Path) -> None:
    tts = EspeakTts()
    sink = WavFileSink(tmp_path / "all.wav", tts.sample_rate_hz, realtime=False)
    speaker = Speaker(tts, sink)
    speaker.say("One. Two. Three.", 0.0)
    speaker.finish(0.0)
    sink.close(0.0)
    assert sink.played(0.0) == sink.queued() > 0
    with pytest.raises(BadInputError, match="folder"):
        WavFileSink(tmp_path, 16000)


def test_no_sound_card_is_one_clear_line() -> None:
    try:
        sink = SoundDeviceSink("", 22050)
    except DeviceUnavailableError as exc:
        assert "--audio-out" in str(exc)
    else:  # a machine with a sound card
        sink.close(0.0)


def _speech(text: str, voice: str = "en-us") -> np.ndarray:
    tts = EspeakTts(voice=voice)
    return np.asarray(soxr.resample(tts.synthesize(text), tts.sample_rate_hz, 16_000),
                      dtype=np.float32)


def test_the_echo_canceller_removes_our_voice_and_keeps_the_wearers() -> None:
    played = _speech("The sign says exit twelve, Main Street. It is on the left after the "
                     "bridge, and the museum is closed on Mondays.")
    mic = AcousticPath(gain=0.5, delay_s=0.004, reverb_s=0.01).apply(played)
    wearer = _speech("Stop, what time is it?", voice="en-gb-x-rp")
    start = 2 * 16_000
    mic[start:start + len(wearer)] += wearer
    canceller = EchoCanceller()
    out = np.concatenate([canceller.process(mic[i:i + 512], played[i:i + 512])
                          for i in range(0, len(mic) - 512, 512)])
    echo_only = slice(16_000, start)
    assert rms(out[echo_only]) < 0.05 * rms(mic[echo_only])  # more than 26 dB less echo
    kept = out[start:start + len(wearer)]
    assert np.corrcoef(kept, wearer[:len(kept)])[0, 1] > 0.8  # the wearer is kept
    assert canceller.double_talk_blocks > 0


def _echo_of(played: np.ndarray, path: AcousticPath, noise_dbfs: float | None,
             seed: int) -> np.ndarray:
    mic = path.apply(played)
    if noise_dbfs is not None:
        rng = np.random.default_rng(seed)
        mic = mic + rng.normal(0.0, 10 ** (noise_dbfs / 20), len(mic)).astype(np.float32)
    return mic.astype(np.float32)


PATHS = [AcousticPath(gain=0.5, delay_s=0.004, reverb_s=0.01),
         AcousticPath(gain=0.8, delay_s=0.002, reverb_s=0.02, seed=3),
         AcousticPath(gain=0.3, delay_s=0.006, reverb_s=0.005, seed=5)]


def test_our_own_voice_never_barges_in_and_the_wearer_does() -> None:
    from support.speech import barge_ins

    # Without the near-end score, 3 in 4 of these answers cut themselves off within the
    # first half second, while the echo canceller was still learning the path.
    answers = [_speech("The sign says exit twelve, Main Street. It is on the left."),
               _speech("It is Friday, the fourth of December. You have two notes saved.",
                       voice="en-us+f3")]
    lead = np.zeros(8000, dtype=np.float32)
    false_barges, runs = 0, 0
    for a, answer in enumerate(answers):
        for p, path in enumerate(PATHS):
            for offset in (0, 200) if p else (0, 96, 333):
                for noise in (None, -50.0):
                    played = np.concatenate([lead[:8000 - offset], answer, lead])
                    mic = _echo_of(played, path, noise, seed=a * 10 + p)
                    false_barges += bool(barge_ins(mic, played))
                    runs += 1
    assert false_barges <= 1, f"{false_barges} of {runs} answers barged in on themselves"

    wearer = _speech("Stop, what time is it?", voice="en-gb-x-rp")
    for path in PATHS:
        for level_db in (0.0, -6.0):  # the wearer as loud as the echo, and 6 dB quieter
            played = np.concatenate([lead, answers[0], lead])
            mic = _echo_of(played, path, -50.0, seed=1)
            start = 8000 + 16_000  # a second into the answer
            echo_level = rms(mic[start:start + len(wearer)])
            mic[start:start + len(wearer)] += wearer * (echo_level / rms(wearer)
                                                        * 10 ** (level_db / 20))
            fired = [t for t in barge_ins(mic, played) if t >= start / 16_000 - 0.05]
            assert fired, (path.impulse[:3], level_db)
            assert fired[0] - start / 16_000 < 0.3  # found within 0.3 s of their speech


def test_the_wearers_speech_over_the_answer_holds_it_within_100_ms_and_our_voice_does_not(
        ) -> None:
    """The hold on a sound's onset (the echo canceller's near-end score, once it has
    settled), before the VAD, which needs 60-150 ms of a word to call it speech."""
    from support.speech import holds, speech_extent

    answers = [_speech("The sign says exit twelve, Main Street. It is on the left."),
               _speech("It is Friday, the fourth of December. You have two notes saved.",
                       voice="en-us+f3")]
    lead = np.zeros(8000, dtype=np.float32)
    held_by_echo: list[tuple[float, bool]] = []
    for a, answer in enumerate(answers):
        for p, path in enumerate(PATHS):
            for noise in (None, -50.0):
                played = np.concatenate([lead, answer, lead])
                held_by_echo += holds(_echo_of(played, path, noise, seed=a * 10 + p), played)
    # Never on a sound's onset (the canceller's score: numpy, the same on any CPU); the VAD
    # may call one chunk of our voice speech where the filter is shorter than the room (20
    # ms of reverb), as the barge-in test above allows.
    assert [t for t, by_onset in held_by_echo if by_onset] == [], held_by_echo
    assert len(held_by_echo) <= 1, held_by_echo

    played = np.concatenate([lead, answers[0], lead])
    start = 8000 + 16_000  # a second into the answer
    for voice, text in (("en-gb-x-rp", "Stop, what time is it?"), ("en-us+f3", "Wait, hold on."),
                        ("en-gb-scotland", "Sorry, what was that?")):
        wearer = _speech(text, voice=voice)
        true_start_s = start / 16_000 + speech_extent(wearer)[0]
        for path in PATHS:
            mic = _echo_of(played, path, -50.0, seed=1)
            span = slice(start, start + len(wearer))
            mic[span] += wearer * (rms(mic[span]) / rms(wearer) * 10 ** (10 / 20))  # +10 dB
            held = [t for t, _ in holds(mic, played) if t > true_start_s - 0.05]
            assert held and held[0] - true_start_s <= 0.1, (voice, path.impulse[:3], held[:1])


def test_our_own_voice_re_opening_a_turn_does_not_replace_the_question() -> None:
    # A turn ended early, our answer began, and echo the canceller missed resumed the
    # segment: the revision (the question + our voice) must not reach the runtime. Only
    # the speech from where the segment resumed is held to the echo guard.
    from glasses_agent.clock import ManualClock
    from glasses_agent.edge.hearing import HearingThread
    from glasses_agent.edge.speech.playback import SilentSink
    from glasses_agent.frames import SpeechResumed, Transcript
    from glasses_agent.stages import Pipeline

    def hearing_after_the_question() -> tuple[HearingThread, list[object]]:
        heard: list[object] = []
        hearing = HearingThread([], Pipeline([]), clock=ManualClock(), on_frame=heard.append,
                                on_barge_in=lambda start_s, held_s: None,
                                sink=SilentSink(16_000, realtime=False))
        hearing._emit(Transcript(text="Hey glasses, what is this?", start_s=1.0, end_s=2.5),
                      2.7)
        hearing._playing.append([2.9, 6.0])  # our answer plays from 2.9 s
        return hearing, heard

    whole = Transcript(text="Hey glasses, what is this? It is a mug", start_s=1.0, end_s=3.8,
                       revises=True)
    hearing, heard = hearing_after_the_question()
    hearing._emit(SpeechResumed(timestamp_s=3.1, start_s=1.0), 3.1)  # inside our answer
    hearing._emit(whole, 4.0)
    assert [type(h.frame).__name__ for h in heard] == [  # type: ignore[attr-defined]
        "Transcript", "SpeechResumed"] and hearing.echo_transcripts == 1
    # the wearer going on before our answer began is theirs: the revision is handed on
    hearing, heard = hearing_after_the_question()
    hearing._emit(SpeechResumed(timestamp_s=2.8, start_s=1.0), 2.8)
    hearing._emit(whole, 4.0)
    assert len(heard) == 3 and hearing.echo_transcripts == 0
