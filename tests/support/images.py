"""Test data for the seeing half: real photos, rendered signs and codes, distortions.

Photos ship inside installed packages (scikit-image, matplotlib) and are read by
``edge_models.photos``, as the calibration and the benchmarks read them. Signs
(a clean board here; ``edge_models.signs`` makes whole tilted frames of them for
calibration), price tags, EAN-13 and QR codes are rendered here and then
"photographed": warped in perspective, blurred and given sensor noise, and placed
on a real photo.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import numpy.typing as npt

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


# -- EAN-13 ----------------------------------------------------------------------------------
# The standard tables: L (odd parity) codes per digit; R codes are their complement,
# G codes are the R codes reversed; the first digit picks the L/G pattern of the left half.
EAN13_L = ("0001101", "0011001", "0010011", "0111101", "0100011",
           "0110001", "0101111", "0111011", "0110111", "0001011")
_R = tuple("".join("1" if b == "0" else "0" for b in code) for code in EAN13_L)
_G = tuple(code[::-1] for code in _R)
_PARITY = ("LLLLLL", "LLGLGG", "LLGGLG", "LLGGGL", "LGLLGG",
           "LGGLLG", "LGGGLL", "LGLGLG", "LGLGGL", "LGGLGL")


def ean13_check_digit(twelve: str) -> int:
    """The check digit (the product's rule: ``glasses_agent.edge.perception.barcodes``)."""
    from glasses_agent.edge.perception.barcodes import ean_check_digit

    return ean_check_digit(twelve)


def ean13_modules(code: str) -> str:
    """The 95 modules (1 = bar) of an EAN-13 code; ``code`` has 12 or 13 digits."""
    assert code.isdigit() and len(code) in (12, 13), code
    if len(code) == 12:
        code += str(ean13_check_digit(code))
    assert ean13_check_digit(code[:12]) == int(code[12]), f"bad check digit in {code}"
    parity = _PARITY[int(code[0])]
    left = "".join((EAN13_L if p == "L" else _G)[int(d)] for p, d in zip(parity, code[1:7],
                                                                            strict=True))
    right = "".join(_R[int(d)] for d in code[7:13])
    modules = "101" + left + "01010" + right + "101"
    assert len(modules) == 95
    return modules


def render_ean13(code: str, *, module_px: int = 3, height_px: int = 120,
                 quiet_modules: int = 12) -> UInt8Array:
    """An EAN-13 symbol, black bars on white, with its digits printed under it."""
    modules = ean13_modules(code)
    width = (95 + 2 * quiet_modules) * module_px
    image = np.full((height_px + 30, width, 3), 255, np.uint8)
    for i, bit in enumerate(modules):
        if bit == "1":
            x0 = (quiet_modules + i) * module_px
            guard = i < 3 or 45 <= i < 50 or i >= 92
            image[10:height_px + (10 if guard else 0), x0:x0 + module_px] = 0
    digits = code if len(code) == 13 else code + str(ean13_check_digit(code))
    cv2.putText(image, digits, (quiet_modules * module_px - 2 * module_px, height_px + 25),
                cv2.FONT_HERSHEY_SIMPLEX, module_px * 0.28, (0, 0, 0), max(1, module_px // 2),
                cv2.LINE_AA)
    return image


def render_qr(text: str, *, module_px: int = 6, border_modules: int = 4) -> UInt8Array:
    """A QR code made by OpenCV's encoder, scaled to ``module_px`` per module, BGR."""
    qr = cv2.QRCodeEncoder.create().encode(text)
    qr = cv2.copyMakeBorder(qr, border_modules, border_modules, border_modules,
                            border_modules, cv2.BORDER_CONSTANT, value=255)
    qr = cv2.resize(qr, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(cv2.cvtColor(qr, cv2.COLOR_GRAY2BGR))


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
def perspective(image: UInt8Array, *, strength: float = 0.08, seed: int = 0,
                border: tuple[int, int, int] = (255, 255, 255)) -> UInt8Array:
    """Warp as if seen at an angle: each corner moves by up to ``strength`` of the size."""
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    jitter = rng.uniform(0, strength, (4, 2)) * np.float32([w, h])
    signs = np.float32([[1, 1], [-1, 1], [-1, -1], [1, -1]])
    dst = (src + jitter * signs).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    return np.ascontiguousarray(out)


def blur(image: UInt8Array, sigma_px: float) -> UInt8Array:
    return np.ascontiguousarray(cv2.GaussianBlur(image, (0, 0), sigma_px))


def motion_blur(image: UInt8Array, length_px: int, angle_deg: float = 0.0) -> UInt8Array:
    kernel = np.zeros((length_px, length_px), np.float32)
    kernel[length_px // 2, :] = 1.0 / length_px
    rot = cv2.getRotationMatrix2D((length_px / 2 - 0.5, length_px / 2 - 0.5), angle_deg, 1.0)
    kernel = cv2.warpAffine(kernel, rot, (length_px, length_px))
    kernel /= max(float(kernel.sum()), 1e-6)
    return np.ascontiguousarray(cv2.filter2D(image, -1, kernel))


def noise(image: UInt8Array, sigma: float, seed: int = 0) -> UInt8Array:
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def paste(background: UInt8Array, item: UInt8Array, x: int, y: int) -> UInt8Array:
    """``item`` placed on a copy of ``background`` at (x, y), clipped to fit."""
    out = background.copy()
    h = min(item.shape[0], out.shape[0] - y)
    w = min(item.shape[1], out.shape[1] - x)
    out[y:y + h, x:x + w] = item[:h, :w]
    return out


def photograph(item: UInt8Array, *, background: str = "coffee", scale: float = 1.0,
               at: tuple[int, int] = (40, 40), strength: float = 0.06, blur_px: float = 0.8,
               noise_sigma: float = 4.0, seed: int = 0) -> UInt8Array:
    """``item`` held up in front of a real photo, then seen at an angle, slightly out of
    focus, with sensor noise and JPEG compression (quality 80)."""
    bg = photo(background)
    if scale != 1.0:
        item = cv2.resize(item, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scene = paste(bg, item, *at)
    scene = perspective(scene, strength=strength, seed=seed, border=(90, 90, 90))
    scene = blur(scene, blur_px) if blur_px > 0 else scene
    scene = noise(scene, noise_sigma, seed=seed)
    ok, jpeg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))


def write_video(path: Path, frames: Sequence[UInt8Array], fps: float = 30.0) -> Path:
    """Write BGR frames (all the same size) to an MJPG .avi, which OpenCV headless reads."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened(), f"cannot write {path}"
    for frame in frames:
        writer.write(frame)
    writer.release()
    return path


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
