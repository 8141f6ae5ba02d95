"""Keyframe choice: the sharpest recent frame, not simply the last one.

Sharpness is the Tenengrad measure: the mean squared Sobel gradient magnitude
of a grey image scaled down to at most ``SHARPNESS_WIDTH_PX`` wide. It falls
steeply with defocus and motion blur, it is cheaper than the variance of the
Laplacian at the same resolution (the 3x3 Sobel pair is separable), and it is
less noise-driven (sensor noise dominates the Laplacian's second derivative).
Scaling down first makes it about 1 ms a frame and compares frames of
different sizes fairly. Frames in a short ring show nearly the same scene, so
their scores are comparable.

Among frames whose sharpness is within ``tolerance`` of the best, the newest
wins: a question is about what is in view now.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2
from glasses_agent.frames import VideoFrame

__all__ = ["SHARPNESS_WIDTH_PX", "choose_keyframe", "sharpness"]

UInt8Array = npt.NDArray[np.uint8]
SHARPNESS_WIDTH_PX = 320


def sharpness(image_bgr: UInt8Array, *, width_px: int = SHARPNESS_WIDTH_PX) -> float:
    """Tenengrad sharpness: mean of Gx^2 + Gy^2 (Sobel 3x3) on a downscaled grey image."""
    cv2 = _cv2()
    grey = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr
    h, w = grey.shape[:2]
    if w > width_px:
        grey = cv2.resize(grey, (width_px, max(1, round(h * width_px / w))),
                          interpolation=cv2.INTER_AREA)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return float(np.mean(gx * gx + gy * gy))


def choose_keyframe(
    frames: Sequence[VideoFrame],
    *,
    now_s: float | None = None,
    max_age_s: float | None = None,
    tolerance: float = 0.1,
) -> VideoFrame | None:
    """The sharpest of ``frames`` (the newest among those within ``tolerance`` of the best).

    With ``now_s`` and ``max_age_s``, frames older than ``max_age_s`` are not
    considered (unless all are: then the newest frame is returned). None for no frames.
    """
    if not frames:
        return None
    candidates = list(frames)
    if now_s is not None and max_age_s is not None:
        candidates = [f for f in candidates if now_s - f.timestamp_s <= max_age_s]
        if not candidates:
            return max(frames, key=lambda f: f.timestamp_s)
    scores = [sharpness(f.image_bgr) for f in candidates]
    best = max(scores)
    good = [f for f, s in zip(candidates, scores, strict=True) if s >= (1.0 - tolerance) * best]
    return max(good, key=lambda f: (f.timestamp_s, f.index))
