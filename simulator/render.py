"""What the simulated camera sees: real photos, and signs, price tags and codes made to look
photographed.

Photos are the ones that ship inside scikit-image and matplotlib
(``edge_models.photos``). Signs and price tags are drawn with a real TrueType font
and seen at an angle, blurred and noisy (``edge_models.signs.render_sign``).
Barcodes (EAN-13, drawn here to the standard's tables) and QR codes (OpenCV's
encoder) are held up in front of a photo by ``photograph``: pasted on it, warped
in perspective, slightly out of focus, with sensor noise and JPEG compression.
Every image is made from a seed: the same call gives the same pixels.

The tests' image helpers (``tests/support/images.py``) use these same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2

__all__ = [
    "EAN13_L",
    "blur",
    "ean13_check_digit",
    "ean13_modules",
    "noise",
    "paste",
    "perspective",
    "photograph",
    "render_ean13",
    "render_qr",
    "write_video",
]

UInt8Array = npt.NDArray[np.uint8]

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
    if not (code.isdigit() and len(code) in (12, 13)):
        raise ValueError(f"an EAN-13 code has 12 or 13 digits, not {code!r}")
    if len(code) == 12:
        code += str(ean13_check_digit(code))
    if ean13_check_digit(code[:12]) != int(code[12]):
        raise ValueError(f"bad check digit in {code} (it should end in "
                         f"{ean13_check_digit(code[:12])})")
    parity = _PARITY[int(code[0])]
    left = "".join((EAN13_L if p == "L" else _G)[int(d)]
                   for p, d in zip(parity, code[1:7], strict=True))
    right = "".join(_R[int(d)] for d in code[7:13])
    return "101" + left + "01010" + right + "101"


def render_ean13(code: str, *, module_px: int = 3, height_px: int = 120,
                 quiet_modules: int = 12) -> UInt8Array:
    """An EAN-13 symbol, black bars on white, with its digits printed under it."""
    cv2 = _cv2()
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
    cv2 = _cv2()
    qr = cv2.QRCodeEncoder.create().encode(text)
    qr = cv2.copyMakeBorder(qr, border_modules, border_modules, border_modules,
                            border_modules, cv2.BORDER_CONSTANT, value=255)
    qr = cv2.resize(qr, None, fx=module_px, fy=module_px, interpolation=cv2.INTER_NEAREST)
    return np.ascontiguousarray(cv2.cvtColor(qr, cv2.COLOR_GRAY2BGR))


# -- photographic distortions ----------------------------------------------------------------
def perspective(image: UInt8Array, *, strength: float = 0.08, seed: int = 0,
                border: tuple[int, int, int] = (255, 255, 255)) -> UInt8Array:
    """Warp as if seen at an angle: each corner moves by up to ``strength`` of the size."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float32)
    jitter = rng.uniform(0, strength, (4, 2)) * np.array([w, h], np.float32)
    signs = np.array([[1, 1], [-1, 1], [-1, -1], [1, -1]], np.float32)
    dst = (src + jitter * signs).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    out = cv2.warpPerspective(image, matrix, (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=border)
    return np.ascontiguousarray(out)


def blur(image: UInt8Array, sigma_px: float) -> UInt8Array:
    return np.ascontiguousarray(_cv2().GaussianBlur(image, (0, 0), sigma_px))


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


def photograph(item: UInt8Array, *, background: str | UInt8Array = "coffee",
               scale: float = 1.0, at: tuple[int, int] = (40, 40), strength: float = 0.06,
               blur_px: float = 0.8, noise_sigma: float = 4.0, seed: int = 0) -> UInt8Array:
    """``item`` held up in front of a real photo (a name from ``edge_models.photos`` or an
    image), then seen at an angle, slightly out of focus, with sensor noise and JPEG
    compression (quality 80)."""
    from edge_models.photos import photo

    cv2 = _cv2()
    bg = photo(background) if isinstance(background, str) else background
    if scale != 1.0:
        item = cv2.resize(item, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    scene = paste(bg, item, *at)
    scene = perspective(scene, strength=strength, seed=seed, border=(90, 90, 90))
    scene = blur(scene, blur_px) if blur_px > 0 else scene
    scene = noise(scene, noise_sigma, seed=seed)
    ok, jpeg = cv2.imencode(".jpg", scene, [cv2.IMWRITE_JPEG_QUALITY, 80])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return np.ascontiguousarray(cv2.imdecode(jpeg, cv2.IMREAD_COLOR))


def write_video(path: Path, frames: Sequence[UInt8Array], fps: float = 30.0) -> Path:
    """Write BGR frames (all the same size) to an MJPG .avi, which OpenCV headless reads."""
    cv2 = _cv2()
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    if not writer.isOpened():
        raise OSError(f"cannot write the video {path}")
    for frame in frames:
        if frame.shape[:2] != (h, w):
            frame = cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)
        writer.write(frame)
    writer.release()
    return path
