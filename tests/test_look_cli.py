"""``glasses-agent look`` through the real command line, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cv2
import pytest
from support.cli import assert_one_line_error, run_agent
from support.images import (
    blur,
    paste,
    photo,
    photograph,
    render_ean13,
    render_sign,
    write_video,
)


def _look(*args: str) -> subprocess.CompletedProcess[str]:
    # fp32, so that labels can be asserted exactly on any CPU (int8 kernels differ by CPU).
    return run_agent("look", *args, env={**os.environ, "GLASSES_AGENT_MODELS__INT8": "never"})


def _one_line_error(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    assert_one_line_error(proc, "glasses-agent look: ", *words)


def test_missing_file(tmp_path: Path) -> None:
    _one_line_error(_look(str(tmp_path / "nowhere.jpg"), "--json"), "file not found",
                    "nowhere.jpg")


@pytest.mark.parametrize("name,content", [
    ("corrupt.jpg", b"\xff\xd8\xff\xe0 this is not the rest of a JPEG" * 50),
    ("truncated.png", None),
    ("empty.jpg", b""),
    ("noise.avi", bytes(range(256)) * 40),
])
def test_corrupt_files(tmp_path: Path, name: str, content: bytes | None) -> None:
    path = tmp_path / name
    if content is None:  # a real PNG cut short: libpng would complain on stderr
        ok, png = cv2.imencode(".png", photo("coffee"))
        content = png.tobytes()[:20000]
    path.write_bytes(content)
    _one_line_error(_look(str(path)), "cannot read", name)


def test_a_folder_is_not_a_file(tmp_path: Path) -> None:
    _one_line_error(_look(str(tmp_path)), "folder")


def test_look_at_a_photo_with_a_sign_and_a_barcode(tmp_path: Path) -> None:
    scene = paste(photo("coffee"), render_sign(["Espresso $3.49"], size_px=30), 20, 20)
    scene = paste(scene, render_ean13("590123412345", module_px=2), 330, 280)
    path = tmp_path / "counter.jpg"
    cv2.imwrite(str(path), photograph(scene, background="coffee", at=(0, 0), strength=0.03))
    proc = _look(str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["kind"] == "image" and result["size_px"] == [600, 400]
    assert result["in_view"] == "espresso"
    assert {"espresso", "cup"} <= {label["name"] for label in result["labels"]}
    assert all(set(label) == {"name", "score"} for label in result["labels"])
    assert [line["text"] for line in result["text"]][:1] == ["Espresso $3.49"]
    assert set(result["text"][0]) == {"text", "score", "box"} and len(result["text"][0]["box"]) == 4
    assert result["prices"] == ["$3.49"]
    assert [(c["type"], c["data"]) for c in result["barcodes"]] == [("EAN_13", "5901234123457")]
    assert result["faces"] == []
    assert set(result["timings_ms"]) == {"recognition", "ocr", "faces", "barcodes"}
    # The plain-text form says the same things.
    text = _look(str(path)).stdout
    assert "In view:  espresso" in text and "Espresso $3.49" in text and "5901234123457" in text


def test_look_at_a_video_picks_the_sharp_frame(tmp_path: Path) -> None:
    face = cv2.resize(photo("grace_hopper"), (320, 376))
    frames = [blur(face, 4.0)] * 20 + [face] * 4 + [blur(face, 4.0)] * 20
    path = write_video(tmp_path / "walk.avi", frames, fps=10.0)
    proc = _look(str(path), "--json", "--frames", "11")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["kind"] == "video" and result["frame_count"] == 44
    assert result["keyframe"]["frames_considered"] == 11
    assert 20 <= result["keyframe"]["index"] < 24
    assert len(result["faces"]) == 1


def test_a_large_photo_is_scaled_down_before_the_models(tmp_path: Path) -> None:
    # A 12-megapixel photo: the astronaut, upscaled 8x (face detection at full size took 7 s).
    big = cv2.resize(photo("astronaut"), (4096, 4096), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "big.jpg"
    cv2.imwrite(str(path), big, [cv2.IMWRITE_JPEG_QUALITY, 85])
    proc = _look(str(path), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["original_size_px"] == [4096, 4096]
    assert result["size_px"] == [1920, 1920]
    assert len(result["faces"]) >= 1
    x0, y0, x1, y1 = result["faces"][0]
    assert 0 <= x0 < x1 <= 1920 and 0 <= y0 < y1 <= 1920
