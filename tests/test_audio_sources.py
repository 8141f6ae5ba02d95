"""Audio sources: files of any rate/depth/channels to 16 kHz mono chunks; bad files; the mic."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
from support.speech import RATE_HZ, compose, sox, speak, write_wav

from glasses_agent.edge.sources import (
    FileAudioSource,
    MicrophoneSource,
    pick_input_device,
    probe_audio_file,
    read_audio_file,
)
from glasses_agent.errors import BadInputError, DeviceUnavailableError
from glasses_agent.frames import AudioChunk


@pytest.fixture(scope="module")
def question(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    audio, _ = compose([0.5, speak("hey glasses, what am I looking at?"), 0.5])
    path = write_wav(tmp_path_factory.mktemp("src") / "question.wav", audio)
    return path, read_audio_file(path)


def _similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Peak normalized cross-correlation within +-5 ms (resamplers may shift a sample or two)."""
    n = min(len(a), len(b))
    a, b = a[:n].astype(np.float64), b[:n].astype(np.float64)
    best = 0.0
    for lag in range(-80, 81):
        x, y = (a[lag:], b[: n - lag]) if lag >= 0 else (a[: n + lag], b[-lag:])
        best = max(best, float(x @ y / (np.linalg.norm(x) * np.linalg.norm(y) + 1e-12)))
    return best


def test_file_chunks_are_512_samples_with_contiguous_timestamps(
    question: tuple[Path, np.ndarray],
) -> None:
    path, reference = question
    chunks = list(FileAudioSource(path, start_s=10.0))
    assert all(isinstance(c, AudioChunk) and c.sample_rate_hz == RATE_HZ for c in chunks)
    assert all(len(c.samples) == 512 for c in chunks[:-1])
    assert 0 < len(chunks[-1].samples) <= 512
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.timestamp_s == pytest.approx(before.timestamp_s + 512 / RATE_HZ)
    assert chunks[0].timestamp_s == 10.0
    joined = np.concatenate([c.samples for c in chunks])
    np.testing.assert_allclose(joined, reference, atol=1e-6)
    assert joined.dtype == np.float32


@pytest.mark.parametrize(
    ("name", "sox_args"),
    [
        ("u8_48k_stereo.wav", ("-r", "48000", "-c", "2", "-b", "8", "-e", "unsigned-integer")),
        ("s24_44k.wav", ("-r", "44100", "-b", "24")),
        ("f32_22k_stereo.wav", ("-r", "22050", "-c", "2", "-e", "floating-point", "-b", "32")),
        ("s16_8k.flac", ("-r", "8000", "-b", "16")),
        ("s16_48k_stereo.flac", ("-r", "48000", "-c", "2", "-b", "16")),
    ],
)
def test_any_rate_depth_and_channels_become_16k_mono(
    question: tuple[Path, np.ndarray], tmp_path: Path, name: str, sox_args: tuple[str, ...],
) -> None:
    path, reference = question
    variant = sox(path, tmp_path / name, *sox_args)
    info = probe_audio_file(variant)
    audio = read_audio_file(variant)
    assert abs(len(audio) - len(reference)) <= 2, info
    # 8 kHz loses everything above 4 kHz, 8-bit adds quantization noise: still the same signal.
    assert _similarity(audio, reference) > (0.98 if "8k" in name else 0.995)


def test_stereo_is_mixed_to_the_channel_mean(tmp_path: Path) -> None:
    left = np.sin(2 * np.pi * 440 * np.arange(RATE_HZ) / RATE_HZ).astype(np.float32) * 0.5
    right = np.zeros_like(left)
    path = tmp_path / "stereo.wav"
    soundfile.write(str(path), np.stack([left, right], axis=1), RATE_HZ, subtype="FLOAT")
    np.testing.assert_allclose(read_audio_file(path), left / 2, atol=1e-6)


def _bad_files(tmp: Path, question: Path) -> dict[str, tuple[Path, str]]:
    data = question.read_bytes()
    (tmp / "empty.wav").write_bytes(b"")
    soundfile.write(str(tmp / "no_samples.wav"), np.zeros(0, dtype=np.float32), RATE_HZ)
    (tmp / "truncated.wav").write_bytes(data[: len(data) // 2])
    (tmp / "header_only.wav").write_bytes(data[:44])
    (tmp / "broken_header.wav").write_bytes(data[:20])
    (tmp / "notes.wav").write_text("this is a text file, not audio\n")
    (tmp / "random.flac").write_bytes(np.random.default_rng(1).bytes(5000))
    (tmp / "folder.wav").mkdir()
    (tmp / "rate_1hz.wav").write_bytes(_patched(data, 24, 4, 1))
    (tmp / "rate_4mhz.wav").write_bytes(_patched(data, 24, 4, 4_000_000))
    (tmp / "bits_7.wav").write_bytes(_patched(data, 34, 2, 7))
    (tmp / "channels_300.wav").write_bytes(_patched(data, 22, 2, 300))
    return {
        "missing": (tmp / "missing.wav", "no such file"),
        "empty": (tmp / "empty.wav", "is empty"),
        "no samples": (tmp / "no_samples.wav", "no audio samples"),
        "truncated": (tmp / "truncated.wav", "truncated"),
        "header only": (tmp / "header_only.wav", "truncated"),
        "broken header": (tmp / "broken_header.wav", "damaged or truncated"),
        "text": (tmp / "notes.wav", "not an audio file"),
        "random bytes": (tmp / "random.flac", "not an audio file"),
        "directory": (tmp / "folder.wav", "directory"),
        # Bogus fmt fields that libsndfile accepts: a 1 Hz rate used to make the resampler
        # produce 16,000 samples per sample (the CLI hung); the others decoded as noise.
        "1 Hz": (tmp / "rate_1hz.wav", "bad header: 1 Hz"),
        "4 MHz": (tmp / "rate_4mhz.wav", "bad header: 4000000 Hz"),
        "7-bit samples": (tmp / "bits_7.wav", "bad WAV header: 1 channel(s) of 7-bit"),
        "300 channels": (tmp / "channels_300.wav", "bad WAV header: 300 channel(s)"),
    }


def _patched(wav: bytes, offset: int, width: int, value: int) -> bytes:
    """``wav`` (a canonical 44-byte-header PCM WAV) with one little-endian header field set."""
    return wav[:offset] + value.to_bytes(width, "little") + wav[offset + width:]


def test_bad_files_are_refused_with_a_reason(
    question: tuple[Path, np.ndarray], tmp_path: Path,
) -> None:
    for label, (path, reason) in _bad_files(tmp_path, question[0]).items():
        with pytest.raises(BadInputError) as caught:
            FileAudioSource(path)
        message = str(caught.value)
        assert reason in message, (label, message)
        assert str(path) in message and "\n" not in message, label


def test_input_device_is_chosen_by_index_or_name() -> None:
    devices = [
        {"name": "HDA Intel PCH: ALC257 Analog (hw:0,0)", "max_input_channels": 2},
        {"name": "HDMI 0", "max_input_channels": 0},
        {"name": "Ray-Ban Meta Glasses", "max_input_channels": 1},
    ]
    assert pick_input_device(devices, "") is None
    assert pick_input_device(devices, "2") == 2
    assert pick_input_device(devices, "ray-ban") == 2
    assert pick_input_device(devices, "alc257") == 0
    with pytest.raises(DeviceUnavailableError, match="not an input"):
        pick_input_device(devices, "1")
    with pytest.raises(DeviceUnavailableError, match="no audio input named like 'usb'"):
        pick_input_device(devices, "usb")
    with pytest.raises(DeviceUnavailableError, match="no audio input device found"):
        pick_input_device([{"name": "HDMI 0", "max_input_channels": 0}], "")


def test_microphone_opens_or_says_clearly_why_not() -> None:
    import sounddevice

    has_input = any(d["max_input_channels"] > 0 for d in sounddevice.query_devices())
    mic = MicrophoneSource("")
    if not has_input:  # this project's CI machines have no sound card
        with pytest.raises(DeviceUnavailableError, match="no audio input device found"):
            mic.open()
        return
    with mic:
        chunks = []
        for chunk in mic:
            chunks.append(chunk)
            if len(chunks) == 3:
                break
    assert all(len(c.samples) == 512 and c.sample_rate_hz == RATE_HZ for c in chunks)
    assert chunks[1].timestamp_s - chunks[0].timestamp_s == pytest.approx(0.032)


def test_microphone_callback_path_resamples_and_stamps() -> None:
    """The PortAudio side is outside the project: feed the callback as PortAudio would
    (48 kHz float32 blocks) and read the chunks the source makes of them."""
    from glasses_agent.clock import ManualClock

    clock = ManualClock(100.0)
    mic = MicrophoneSource("", clock=clock)
    mic.device_rate_hz = 48_000
    mic._stream = object()  # as if opened: iteration must not open a device
    tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(32 * 1536) / 48_000)).astype(np.float32)
    for block in tone.reshape(-1, 1536):  # 32 ms blocks, one channel
        mic._callback(block[:, None], len(block), None, None)
    chunks = []
    for chunk in mic:
        chunks.append(chunk)
        if len(chunks) == 25:
            break
    mic._stream = None
    mic.close()
    assert chunks[0].timestamp_s == pytest.approx(100.0 - 0.032)
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.timestamp_s == pytest.approx(before.timestamp_s + 0.032)
    audio = np.concatenate([c.samples for c in chunks])
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(audio)) / RATE_HZ)
    # soxr's filter delays the stream a little; compare past its start-up
    assert _similarity(audio[2000:], expected[2000:].astype(np.float32)) > 0.99
