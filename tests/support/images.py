"""Test data for the seeing half: real photos, rendered signs and codes, distortions.

Photos ship inside installed packages (scikit-image, matplotlib) and are read by
``edge_models.photos``, as the calibration and the benchmarks read them. Signs
(a clean board here; ``edge_models.signs`` makes whole tilted frames of them for
calibration) and price tags are rendered here; EAN-13 and QR codes, and the
"photograph" chain (warped in perspective, blurred, given sensor noise, placed on a
real photo) come from ``simulator.render``, whose scenarios need them at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

# Codes and the photographic chain are the simulator's (its scenarios need them at run
# time); the tests use the very same functions.
from simulator.render import (
    EAN13_L,
    blur,
    ean13_check_digit,
    ean13_modules,
    noise,
    paste,
    perspective,
    photograph,
    render_ean13,
    render_qr,
    write_video,
)

__all__ = [
    "EAN13_L",
    "blur",
    "ean13_check_digit",
    "ean13_modules",
    "face_detector",
    "motion_blur",
    "noise",
    "paste",
    "perceiver",
    "perspective",
    "photo",
    "photograph",
    "render_ean13",
    "render_qr",
    "render_sign",
    "write_video",
]

if TYPE_CHECKING:
    from edge_models.faces import FaceDetector
    from glasses_agent.edge.perception.loop import Perceiver

UInt8Array = npt.NDArray[np.uint8]


@functools.cache
def photo(name: str) -> UInt8Array:
    """A real photo as BGR uint8 (``edge_models.photos``: scikit-image's and matplotlib's
    sample photos; cached here, read-only)."""
    from edge_models.photos import photo as load

    image = load(name)
    image.setflags(write=False)
    return image


# -- signs and price tags --------------------------------------------------------------------
def _font(size_px: int, bold: bool = True) -> object:
    import matplotlib
    from PIL import ImageFont

    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / name),
                              size_px)


def render_sign(lines: Sequence[str], *, size_px: int = 48, fg: tuple[int, int, int] = (20, 20, 20),
                bg: tuple[int, int, int] = (235, 240, 245), pad_px: int = 24,
                bold: bool = True) -> UInt8Array:
    """Lines of text (DejaVu Sans) on a plain board, BGR; colours are BGR."""
    from PIL import Image, ImageDraw

    font = _font(size_px, bold)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [probe.textbbox((0, 0), line, font=font) for line in lines]  # type: ignore[arg-type]
    width = max(b[2] for b in boxes) + 2 * pad_px
    line_h = int(size_px * 1.35)
    height = line_h * len(lines) + 2 * pad_px
    board = Image.new("RGB", (width, height), bg[::-1])
    draw = ImageDraw.Draw(board)
    for i, line in enumerate(lines):
        draw.text((pad_px, pad_px + i * line_h), line, font=font,  # type: ignore[arg-type]
                  fill=fg[::-1])
    rgb = np.asarray(board, dtype=np.uint8)
    return np.ascontiguousarray(rgb[:, :, ::-1])


# -- photographic distortions ----------------------------------------------------------------
def motion_blur(image: UInt8Array, length_px: int, angle_deg: float = 0.0) -> UInt8Array:
    kernel = np.zeros((length_px, length_px), np.float32)
    kernel[length_px // 2, :] = 1.0 / length_px
    rot = cv2.getRotationMatrix2D((length_px / 2 - 0.5, length_px / 2 - 0.5), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length_px, length_px))
    kernel /= max(float(kernel.sum()), 1e-6)
    return np.ascontiguousarray(cv2.filter2D(image, -1, kernel))


# -- models (loaded once per test process) ---------------------------------------------------
@functools.cache
def perceiver() -> Perceiver:
    """The perceiver the default configuration builds: every model, as shipped, in fp32
    (labels are asserted exactly; int8 agreement is tested in test_recognition/test_variants)."""
    from glasses_agent.config import Config, ModelsConfig
    from glasses_agent.edge.perception.loop import Perceiver

    return Perceiver.from_config(Config(models=ModelsConfig(int8="never")))


@functools.cache
def face_detector(kind: str) -> FaceDetector:
    from edge_models.faces import FaceDetector

    return FaceDetector(kind=kind)
