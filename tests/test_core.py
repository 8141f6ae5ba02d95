"""Core types: clocks, frames, the stage runner, the session factory, public exports."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

import edge_models
import glasses_agent
from edge_models.sessions import ModelFileError, choose_providers, create_session
from glasses_agent import frames
from glasses_agent.clock import ManualClock, MonotonicClock
from glasses_agent.errors import GlassesError
from glasses_agent.frames import AudioChunk, Frame, SpeechEnded, SpeechStarted
from glasses_agent.stages import Pipeline


def test_manual_clock_moves_only_forward() -> None:
    clock = ManualClock(10.0)
    assert clock.now_s() == 10.0
    assert clock.advance(0.5) == 10.5
    with pytest.raises(ValueError):
        clock.advance(-1)
    with pytest.raises(ValueError):
        clock.set(1.0)
    a = MonotonicClock().now_s()
    assert MonotonicClock().now_s() >= a


def test_frames_are_frozen_slotted_keyword_only() -> None:
    chunk = AudioChunk(timestamp_s=1.0, samples=np.zeros(512, np.float32), sample_rate_hz=16000)
    assert chunk.duration_s == pytest.approx(0.032)
    with pytest.raises(dataclasses.FrozenInstanceError):
        chunk.timestamp_s = 2.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        SpeechStarted(1.0)  # type: ignore[misc]
    for name in frames.__all__:
        obj = getattr(frames, name)
        if dataclasses.is_dataclass(obj):
            params = obj.__dataclass_params__  # type: ignore[attr-defined]
            assert params.frozen, name
            assert hasattr(obj, "__slots__"), name


class _Threshold:
    """Emits SpeechStarted when a chunk is loud, with the runner's time."""

    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, AudioChunk) and float(np.abs(frame.samples).max()) > 0.5:
            return [frame, SpeechStarted(timestamp_s=now_s)]
        return [frame]


class _EndAfterStart:
    def process(self, frame: Frame, now_s: float) -> Sequence[Frame]:
        if isinstance(frame, SpeechStarted):
            return [frame, SpeechEnded(timestamp_s=now_s + 1, start_s=frame.timestamp_s)]
        return [frame]


def test_pipeline_passes_time_and_fans_out() -> None:
    clock = ManualClock(5.0)
    pipeline = Pipeline([_Threshold(), _EndAfterStart()])
    quiet = AudioChunk(timestamp_s=0, samples=np.zeros(4, np.float32), sample_rate_hz=16000)
    loud = AudioChunk(timestamp_s=0, samples=np.ones(4, np.float32), sample_rate_hz=16000)
    assert pipeline.push(quiet, clock.now_s()) == [quiet]
    clock.advance(2.0)
    out = list(pipeline.run([loud], clock))
    assert out[0] is loud
    assert out[1] == SpeechStarted(timestamp_s=7.0)
    assert out[2] == SpeechEnded(timestamp_s=8.0, start_s=7.0)


def test_session_factory_refuses_missing_and_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="not found: .*nope.onnx"):
        create_session(tmp_path / "nope.onnx")
    bogus = tmp_path / "bogus.onnx"
    bogus.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="sha256"):
        create_session(bogus, sha256="0" * 64)
    with pytest.raises(ModelFileError, match="could not be loaded"):
        create_session(bogus)


def test_provider_choice() -> None:
    chosen = choose_providers()
    assert chosen[-1] == "CPUExecutionProvider"
    assert choose_providers(["cpu"]) == ["CPUExecutionProvider"]
    with pytest.raises(GlassesError, match="not available"):
        choose_providers(["NoSuchExecutionProvider"])


@pytest.mark.parametrize("module", [glasses_agent, edge_models, frames])
def test_public_exports_exist(module: object) -> None:
    names = module.__all__  # type: ignore[attr-defined]
    assert len(set(names)) == len(names)
    for name in names:
        assert hasattr(module, name), name


def test_every_module_imports() -> None:
    root = Path(glasses_agent.__file__).parent.parent
    for package in ("glasses_agent", "edge_models", "simulator"):
        for path in (root / package).rglob("*.py"):
            name = ".".join(path.relative_to(root).with_suffix("").parts)
            if name.endswith("__main__") or "export_" in name:
                continue
            importlib.import_module(name.removesuffix(".__init__"))
