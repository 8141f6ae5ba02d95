"""``glasses-agent transcribe`` through the real CLI (subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from support.speech import RATE_HZ, compose, speak, write_wav

from glasses_agent.edge.speech.text import word_error_rate

TEXTS = ["what time is it?", "read this sign for me please"]


def cli(*args: str, cache: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("GLASSES_AGENT_CONFIG", None)
    if cache is not None:
        env["GLASSES_AGENT_CACHE"] = str(cache)
    return subprocess.run([sys.executable, "-m", "glasses_agent.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[float, float]]]:
    audio, truth = compose([0.8, speak(TEXTS[0]), 1.5, speak(TEXTS[1], "en-gb"), 1.0])
    return write_wav(tmp_path_factory.mktemp("cli") / "two.wav", audio), truth


def test_json_lines_one_per_utterance(two: tuple[Path, list[tuple[float, float]]]) -> None:
    path, truth = two
    proc = cli("transcribe", str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 2
    for line, text, (start_s, end_s) in zip(lines, TEXTS, truth, strict=True):
        assert {"text", "start_s", "end_s", "asr_ms", "words", "language"} <= set(line)
        assert word_error_rate(text, line["text"]) <= 0.2, line["text"]
        assert abs(line["start_s"] - start_s) <= 0.15 and abs(line["end_s"] - end_s) <= 0.15
        assert line["asr_ms"] > 0
        assert line["words"] and {"text", "start_s", "end_s", "probability"} == set(
            line["words"][0])


def test_plain_lines(two: tuple[Path, list[tuple[float, float]]]) -> None:
    proc = cli("transcribe", str(two[0]))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("[") and "time" in lines[0].lower()


def _bad(tmp: Path) -> dict[str, tuple[Path, str]]:
    audio, _ = compose([0.3, speak("what time is it"), 0.3])
    data = write_wav(tmp / "good.wav", audio).read_bytes()
    (tmp / "zero.wav").write_bytes(b"")
    soundfile.write(str(tmp / "empty.wav"), np.zeros(0, dtype=np.float32), RATE_HZ)
    (tmp / "truncated.wav").write_bytes(data[: len(data) // 3])
    (tmp / "text.wav").write_text("not audio at all\n" * 20)
    (tmp / "image.flac").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(2000))
    # A header claiming 1 Hz: libsndfile reads it, and resampling it to 16 kHz used to hang.
    (tmp / "bogus_rate.wav").write_bytes(data[:24] + (1).to_bytes(4, "little") + data[28:])
    return {
        "missing": (tmp / "missing.wav", "no such file"),
        "zero bytes": (tmp / "zero.wav", "is empty"),
        "empty WAV": (tmp / "empty.wav", "no audio samples"),
        "truncated WAV": (tmp / "truncated.wav", "truncated WAV"),
        "text file": (tmp / "text.wav", "not an audio file"),
        "an image": (tmp / "image.flac", "not an audio file"),
        "bogus header": (tmp / "bogus_rate.wav", "bad header: 1 Hz"),
    }


def test_bad_input_exits_2_with_one_line(tmp_path: Path) -> None:
    for label, (path, reason) in _bad(tmp_path).items():
        proc = cli("transcribe", str(path))
        assert proc.returncode == 2, (label, proc.stderr)
        assert proc.stdout == "", label
        assert "Traceback" not in proc.stderr, label
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, (label, proc.stderr)
        assert lines[0].startswith("glasses-agent transcribe: ") and reason in lines[0], lines[0]


def test_a_closed_output_pipe_is_not_a_traceback(
    two: tuple[Path, list[tuple[float, float]]],
) -> None:
    """`glasses-agent transcribe x.wav | head -1`: the reader closes the pipe early."""
    env = {k: v for k, v in os.environ.items() if k != "GLASSES_AGENT_CONFIG"}
    proc = subprocess.Popen([sys.executable, "-m", "glasses_agent.cli", "transcribe",
                             str(two[0])], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    proc.stdout.close()  # before the first transcript is printed
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 141, stderr
    assert stderr == ""


def test_bad_options_exit_2(two: tuple[Path, list[tuple[float, float]]]) -> None:
    proc = cli("transcribe", str(two[0]), "--language", "de")
    assert proc.returncode == 2 and "English only" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    proc = cli("transcribe", str(two[0]), "--model", "large")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    proc = cli("--set", "vad.threshold=1.5", "transcribe", str(two[0]))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "glasses-agent transcribe: vad.threshold must be in (0, 1), not 1.5"]


def test_silence_is_not_an_error(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "quiet.wav", np.zeros(2 * RATE_HZ, dtype=np.float32))
    proc = cli("transcribe", str(path), "--json")
    assert proc.returncode == 0 and proc.stdout == ""
    assert "no speech found" in proc.stderr


def test_base_model_with_a_language(tmp_path: Path) -> None:
    text = "Ich habe meine Brille auf dem Tisch vergessen."
    audio, _ = compose([0.6, speak(text, "de"), 0.8])
    path = write_wav(tmp_path / "de.wav", audio)
    proc = cli("transcribe", str(path), "--json", "--model", "base", "--language", "de",
               cache=tmp_path / "cache")
    assert proc.returncode == 0, proc.stderr
    [line] = [json.loads(x) for x in proc.stdout.splitlines()]
    assert line["language"] == "de"
    assert word_error_rate(text, line["text"]) <= 0.3, line["text"]
    assert (tmp_path / "cache" / "whisper-base" / "model.bin").is_file()


def test_the_bundled_question_is_heard() -> None:
    """The sample that ships in glasses_agent/data (the demo itself runs the simulator's
    scenarios: tests/test_simulator.py)."""
    from importlib.resources import as_file, files

    with as_file(files("glasses_agent.data").joinpath("hey_glasses.wav")) as sample:
        proc = cli("transcribe", str(sample))
    assert proc.returncode == 0, proc.stderr
    transcript = next(line for line in proc.stdout.splitlines() if line.startswith("["))
    assert word_error_rate("hey glasses, what am I looking at?",
                           transcript.split("]", 1)[1]) <= 0.1, proc.stdout


def test_listen_without_a_sound_card_is_one_line() -> None:
    import sounddevice

    if any(d["max_input_channels"] > 0 for d in sounddevice.query_devices()):
        pytest.skip("this machine has a microphone: `listen` would run until stopped")
    proc = cli("listen")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "glasses-agent listen: no audio input device found (no sound card on this machine?); "
        "see `glasses-agent devices`, or give an audio file instead "
        "(`glasses-agent transcribe PATH`)"]
