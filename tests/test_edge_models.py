"""The registry, `glasses-models` (list, verify, quantize, bench) and hash checking."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from support.cli import run_models

from edge_models import cli
from edge_models.bench import bench_pair, benchable
from edge_models.registry import (
    MANIFEST,
    check,
    get_spec,
    load_registry,
    quantized_variants,
    resolve_path,
)
from edge_models.sessions import ModelFileError, create_session, sha256_file

_run = run_models
LOCK = Path(__file__).resolve().parents[1] / "constraints.lock"


def _manifest_with(tmp_path: Path, name: str, **changes: str) -> Path:
    """A copy of the registry where model ``name`` has ``changes`` (TOML values as text)."""
    lines = MANIFEST.read_text().splitlines()
    out, inside = [], False
    for line in lines:
        if line.startswith("[models."):
            inside = line == f"[models.{name}]"
        key = line.split("=", 1)[0].strip()
        if inside and key in changes:
            line = f"{key} = {changes[key]}"
        out.append(line)
    path = tmp_path / "manifest.toml"
    path.write_text("\n".join(out) + "\n")
    return path


def test_every_model_has_provenance() -> None:
    registry = load_registry()
    for name in ("efficientnet_lite0_fp32", "efficientnet_lite0_int8", "ppocr_det", "ppocr_rec",
                 "ppocr_cls", "ppocr_det_int8", "haar_frontalface_alt2", "mtcnn_pnet"):
        assert name in registry
    for spec in registry.values():
        assert len(spec.sha256) == 64, spec.name
        assert spec.license and spec.source and spec.task, spec.name
        assert spec.size_bytes > 0
    assert [s.name for s in quantized_variants("efficientnet_lite0_fp32")] == \
        ["efficientnet_lite0_int8"]
    assert "unclear" in get_spec("mtcnn_pnet").license


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelFileError, match="unknown model 'nope'.*known:"):
        get_spec("nope")


def test_wrong_hash_names_the_file(tmp_path: Path) -> None:
    spec = get_spec("efficientnet_lite0_int8")
    copy = tmp_path / "efficientnet_lite0_int8.onnx"
    shutil.copy(resolve_path(spec), copy)
    assert create_session(copy, sha256=spec.sha256, name=spec.name) is not None
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError) as info:
        create_session(copy, sha256=spec.sha256, name=spec.name)
    message = str(info.value)
    assert str(copy) in message and "sha256" in message and "efficientnet_lite0_int8" in message
    assert "\n" not in message


def test_corrupt_file_through_the_registry(tmp_path: Path) -> None:
    spec = get_spec("ppocr_cls")
    copy = tmp_path / "cls.onnx"
    shutil.copy(resolve_path(spec), copy)
    manifest = _manifest_with(tmp_path, "ppocr_cls", resource=f'"file:{copy}"')
    good = load_registry(manifest)["ppocr_cls"]
    assert check(good) == copy
    with copy.open("r+b") as f:
        f.seek(1000)
        f.write(b"\0\0\0\0")
    with pytest.raises(ModelFileError, match=r"cls\.onnx.*sha256"):
        check(load_registry(manifest)["ppocr_cls"])


def test_verify_a_good_install_exits_0() -> None:
    proc = _run("verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "all" in proc.stdout and "models ok" in proc.stdout
    for name in load_registry():
        assert name in proc.stdout


def test_verify_a_corrupted_entry_fails_clearly(tmp_path: Path) -> None:
    manifest = _manifest_with(tmp_path, "efficientnet_lite0_int8", sha256='"' + "ab" * 32 + '"')
    proc = _run("--manifest", str(manifest), "verify")
    assert proc.returncode == 1
    row = next(line for line in proc.stdout.splitlines()
               if line.startswith("efficientnet_lite0_int8"))
    assert "FAILED" in row and "wrong sha256" in row and "efficientnet_lite0_int8.onnx" in row
    assert "glasses-models quantize efficientnet_lite0_fp32" in row
    assert "1 of" in proc.stderr and "Traceback" not in proc.stderr


def test_verify_says_what_is_missing(tmp_path: Path) -> None:
    manifest = _manifest_with(tmp_path, "ppocr_det", resource='"file:gone/det.onnx"')
    manifest_text = manifest.read_text().replace(
        "[models.mtcnn_onet]", '[models.from_nowhere]\ntask = "x"\nresource = "no_such_pkg:a.onnx"'
        '\nsha256 = "' + "0" * 64 + '"\nsize_bytes = 1\nlicense = "MIT"\nsource = "pip package '
        'no-such-pkg"\npackage = "no-such-pkg==1.0"\n\n[models.mtcnn_onet]')
    manifest.write_text(manifest_text)
    proc = _run("--manifest", str(manifest), "verify")
    assert proc.returncode == 1
    assert "file missing" in proc.stdout and "gone/det.onnx" in proc.stdout
    assert "not installed (pip install no-such-pkg==1.0)" in proc.stdout


def test_malformed_manifest_exits_2_in_one_line(tmp_path: Path) -> None:
    manifest = _manifest_with(tmp_path, "ppocr_det")
    manifest.write_text(manifest.read_text().replace("task = \"ocr-detection\"",
                                                     "task = \"ocr-detection\"\ncolour = 1", 1))
    proc = _run("--manifest", str(manifest), "list")
    assert proc.returncode == 2
    assert "unknown keys ['colour']" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_list_shows_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["NAME", "TASK", "SIZE", "LICENSE", "SOURCE"]
    for name in load_registry():
        assert name in out
    assert "18.5 MB" in out and "Apache-2.0" in out
    assert cli.main(["list", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["efficientnet_lite0_int8"]["quantized_from"] == "efficientnet_lite0_fp32"
    assert cli.main(["list", "--long"]) == 0
    assert "preprocessing" in capsys.readouterr().out


def test_quantize_builds_a_working_qdq_model(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cls_int8.onnx"
    assert cli.main(["quantize", "ppocr_cls", "--output", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert f"sha256 {sha256_file(out)}" in printed
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert out.stat().st_size < get_spec("ppocr_cls").size_bytes * 0.7
    # The same calibration frames give the same file as the one shipped, with the onnxruntime
    # that constraints.lock pins (another version may lay the graph out differently).
    import onnxruntime

    if f"onnxruntime=={onnxruntime.__version__}\n" in LOCK.read_text():
        assert "matches the registered ppocr_cls_int8" in printed
    # On real text crops (not the calibration ones) it decides as the fp32 model does.
    from edge_models.bench import _cls_inputs

    fp32 = create_session(resolve_path(get_spec("ppocr_cls")))
    int8 = create_session(out)
    crops = _cls_inputs()
    same = [int(fp32.run(None, {"x": x})[0].argmax()) == int(int8.run(None, {"x": x})[0].argmax())
            for x in crops]
    assert len(crops) >= 20 and np.mean(same) >= 0.9


def test_quantize_refuses_an_int8_model() -> None:
    assert _run("quantize", "efficientnet_lite0_int8").returncode == 2


def test_bench_compares_fp32_and_int8_side_by_side(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert set(benchable()) >= {"efficientnet_lite0_fp32", "ppocr_det", "ppocr_rec"}
    result = bench_pair("efficientnet_lite0_fp32", runs=1)
    assert result.fp32.name == "efficientnet_lite0_fp32"
    assert result.int8.name == "efficientnet_lite0_int8"
    assert result.frames == 60
    assert result.int8.size_bytes < 0.3 * result.fp32.size_bytes
    assert result.agreement >= 0.85
    assert result.agreement_confident is not None and result.agreement_confident >= 0.9
    report = tmp_path / "bench.json"
    assert cli.main(["bench", "ppocr_cls", "--runs", "1", "--providers", "cpu",
                     "--json", str(report)]) == 0
    table = capsys.readouterr().out
    assert "ppocr_cls" in table and "int8/fp32" in table
    data = json.loads(report.read_text())
    (entry,) = data["models"]
    assert entry["fp32"]["provider"] == "CPUExecutionProvider"
    assert entry["int8"]["latency_median_ms"] > 0 and entry["agreement"] >= 0.9


def test_bench_refuses_a_model_without_int8(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "mtcnn_pnet"]) == 2
    assert "no int8 variant" in capsys.readouterr().err


def test_unknown_provider_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bench", "ppocr_cls", "--providers", "nosuch"]) == 2
    assert "not available" in capsys.readouterr().err


def test_tensorrt_keeps_its_engines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from edge_models.sessions import provider_options

    monkeypatch.setenv("GLASSES_AGENT_TRT_CACHE", str(tmp_path / "trt"))
    trt, cuda, cpu = provider_options(["TensorrtExecutionProvider", "CUDAExecutionProvider",
                                       "CPUExecutionProvider"])
    assert isinstance(trt, tuple) and trt[0] == "TensorrtExecutionProvider"
    assert trt[1]["trt_engine_cache_enable"] == "True"
    assert trt[1]["trt_engine_cache_path"] == str(tmp_path / "trt")
    assert (cuda, cpu) == ("CUDAExecutionProvider", "CPUExecutionProvider")


def test_quantize_and_bench_use_the_manifest_given(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # --manifest once applied to list and verify only: quantize rebuilt the shipped int8 file
    # of the default registry, and bench ignored the registry the user named.
    manifest = _manifest_with(tmp_path, "efficientnet_lite0_int8", resource='"file:int8.onnx"')
    shipped = check(get_spec("efficientnet_lite0_int8"))
    before = shipped.stat().st_mtime_ns
    assert cli.main(["--manifest", str(manifest), "quantize", "efficientnet_lite0_fp32",
                     "--frames", "4", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "int8.onnx").is_file() and shipped.stat().st_mtime_ns == before
    assert f"wrote {tmp_path / 'int8.onnx'}" in out
    assert f"update sha256 and size_bytes in {manifest}" in out
    # That registry's int8 entry now names a file with another hash: bench says so.
    assert cli.main(["--manifest", str(manifest), "bench", "efficientnet_lite0_fp32",
                     "--runs", "1"]) == 2
    assert "int8.onnx has sha256" in capsys.readouterr().err
