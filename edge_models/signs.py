"""Rendered signs and price tags: OCR calibration frames, benchmark and test images.

Text is drawn with a real TrueType font (matplotlib's DejaVu fonts, Bitstream
Vera license) onto a real photo or a plain card, then seen the way glasses see
it: a perspective tilt, blur, sensor noise, JPEG-like softening. Every image is
made from a seed, so the same call gives the same pixels.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_models.errors import BadInputError
from edge_models.opencv import cv2 as _cv2

__all__ = ["SIGN_TEXTS", "Sign", "font_path", "render_sign", "sign_set"]

# What a wearer reads: opening hours, prices, directions, labels.
SIGN_TEXTS = (
    ("OPEN 10:30", "Coffee $4.99"),
    ("EXIT",),
    ("Platform 3", "Departs 14:45"),
    ("SALE 50%", "Shoes $39.95"),
    ("Bananas", "$0.69 / lb"),
    ("NO PARKING", "8AM - 6PM"),
    ("Room 204",),
    ("Espresso 2.50", "Latte 3.80"),
    ("STOP",),
    ("Gate B12", "Boarding 09:15"),
    ("Fresh Bread", "2 for $5"),
    ("Pharmacy",),
)
FONTS = ("DejaVuSans-Bold.ttf", "DejaVuSans.ttf", "DejaVuSerif-Bold.ttf", "DejaVuSansMono.ttf")


@dataclass(frozen=True, slots=True, kw_only=True)
class Sign:
    image_bgr: np.ndarray
    lines: tuple[str, ...]
    seed: int


def font_path(name: str = "DejaVuSans-Bold.ttf") -> Path:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise BadInputError("rendering signs needs matplotlib's fonts: pip install matplotlib")
    path = Path(next(iter(spec.submodule_search_locations))) / "mpl-data" / "fonts" / "ttf" / name
    if not path.is_file():
        raise BadInputError(f"font not found: {path}")
    return path


def render_sign(
    lines: tuple[str, ...],
    *,
    seed: int = 0,
    size: tuple[int, int] = (640, 480),
    background: np.ndarray | None = None,
    tilt: float = 0.15,
    blur_px: float = 1.0,
    noise: float = 6.0,
    font: str = "",
) -> np.ndarray:
    """A ``size`` (width, height) BGR frame showing a card with ``lines`` on it.

    ``tilt`` is the perspective distortion (fraction of the card moved at its
    corners), ``blur_px`` the Gaussian blur sigma, ``noise`` the sensor noise
    standard deviation in grey levels.
    """
    from PIL import Image, ImageDraw, ImageFont

    cv2 = _cv2()
    rng = np.random.default_rng(seed)
    width, height = size
    font_name = font or FONTS[seed % len(FONTS)]
    pil_font = ImageFont.truetype(str(font_path(font_name)), 64)
    # The card: dark text on a light colour, or light text on a dark one.
    light = rng.uniform() < 0.7
    card_rgb = tuple(int(v) for v in (rng.integers(200, 256, 3) if light
                                      else rng.integers(0, 70, 3)))
    ink_rgb = tuple(int(v) for v in (rng.integers(0, 60, 3) if light
                                     else rng.integers(210, 256, 3)))
    boxes = [pil_font.getbbox(line) for line in lines]
    line_h = int(max(b[3] - b[1] for b in boxes)) + 24
    card_w = int(max(b[2] - b[0] for b in boxes)) + 80
    card_h = line_h * len(lines) + 40
    card = Image.new("RGB", (card_w, card_h), card_rgb)
    draw = ImageDraw.Draw(card)
    for i, (line, box) in enumerate(zip(lines, boxes, strict=True)):
        draw.text((40 - box[0], 20 + i * line_h + 12 - box[1]), line, font=pil_font,
                  fill=ink_rgb)
    card_bgr = np.array(card)[:, :, ::-1]
    # Where the card lands in the frame, tilted.
    scale = min(width * rng.uniform(0.55, 0.85) / card_w, height * 0.7 / card_h)
    cw, ch = card_w * scale, card_h * scale
    x0 = rng.uniform(0.05 * width, max(0.05 * width, width - cw - 0.05 * width))
    y0 = rng.uniform(0.05 * height, max(0.05 * height, height - ch - 0.05 * height))
    corners = np.array([[x0, y0], [x0 + cw, y0], [x0 + cw, y0 + ch], [x0, y0 + ch]])
    corners += rng.uniform(-tilt, tilt, (4, 2)) * np.array([cw, ch]) * 0.5
    source = np.array([[0, 0], [card_w, 0], [card_w, card_h], [0, card_h]], np.float32)
    matrix = cv2.getPerspectiveTransform(source, corners.astype(np.float32))
    if background is None:
        frame = np.full((height, width, 3), rng.integers(60, 200, 3), dtype=np.uint8)
    else:
        frame = cv2.resize(background, (width, height), interpolation=cv2.INTER_AREA)
    warped = cv2.warpPerspective(card_bgr, matrix, (width, height), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((card_h, card_w), 255, np.uint8), matrix,
                               (width, height), flags=cv2.INTER_LINEAR)
    alpha = (mask.astype(np.float32) / 255)[:, :, None]
    out = frame.astype(np.float32) * (1 - alpha) + warped.astype(np.float32) * alpha
    if blur_px > 0:
        out = cv2.GaussianBlur(out, (0, 0), blur_px)
    if noise > 0:
        out = out + rng.normal(0, noise, out.shape)
    result: np.ndarray = np.clip(out, 0, 255).astype(np.uint8)
    return result


def sign_set(count: int = 12, *, seed: int = 0, backgrounds: bool = True) -> list[Sign]:
    """``count`` signs cycling through ``SIGN_TEXTS``, over real photos when ``backgrounds``."""
    from edge_models.photos import NO_FACE_PHOTOS, photo

    signs = []
    for i in range(count):
        s = seed + i
        rng = np.random.default_rng(1000 + s)
        lines = SIGN_TEXTS[i % len(SIGN_TEXTS)]
        background = photo(NO_FACE_PHOTOS[i % len(NO_FACE_PHOTOS)]) if backgrounds else None
        image = render_sign(lines, seed=s, background=background,
                            tilt=float(rng.uniform(0.05, 0.25)),
                            blur_px=float(rng.uniform(0.3, 1.6)),
                            noise=float(rng.uniform(2, 10)))
        signs.append(Sign(image_bgr=image, lines=lines, seed=s))
    return signs
