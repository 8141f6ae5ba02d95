"""Keyframe choice: the sharpest recent frame, not simply the last one.

Sharpness is the Tenengrad measure: the mean squared Sobel gradient magnitude
of a grey image scaled down to at most ``SHARPNESS_WIDTH_PX`` wide. It falls
steeply with defocus and motion blur, it is cheaper than the variance of the
Laplacian at the same resolution (the 3x3 Sobel pair is separable), and it is
less noise-driven (sensor noise dominates the Laplacian's second derivative).
Scaling down first makes it about 1 ms a frame and compares frames of
different sizes fairly. Frames in a short ring show nearly the same scene, so
their scores are comparable.

``pick_keyframe`` is the one rule for which frame goes with a question: never
a stale one, a sharp one, and of the sharp ones the nearest to the moment the
facts come from (by default the newest: a question is about what is in view
now).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2
from glasses_agent.frames import VideoFrame

__all__ = ["SHARPNESS_WIDTH_PX", "Timed", "choose_keyframe", "pick_keyframe", "sharpness"]

UInt8Array = npt.NDArray[np.uint8]
SHARPNESS_WIDTH_PX = 320


class Timed(Protocol):
    @property
    def timestamp_s(self) -> float: ...


T = TypeVar("T", bound=Timed)


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


def pick_keyframe(
    candidates: Sequence[T],
    *,
    sharpness_of: Callable[[T], float],
    now_s: float | None = None,
    max_age_s: float | None = None,
    anchor_s: float | None = None,
    tolerance: float = 0.1,
) -> T | None:
    """The one rule for the frame that goes with a question (the router and ``look`` use it).

    1. None older than ``max_age_s`` before ``now_s`` (when both are given): a stale
       frame is never sent; if every candidate is stale, there is no keyframe.
    2. Of the rest, those whose sharpness is within ``tolerance`` of the sharpest.
    3. Of those, the nearest in time to ``anchor_s`` (the perception the facts come
       from, so that image and facts agree; default: the newest), the newer on a tie.
    """
    fresh = list(candidates)
    if now_s is not None and max_age_s is not None:
        fresh = [c for c in fresh if now_s - c.timestamp_s <= max_age_s]
    if not fresh:
        return None
    scores = [sharpness_of(c) for c in fresh]
    best = max(scores)
    sharp = [c for c, score in zip(fresh, scores, strict=True)
             if score >= (1.0 - tolerance) * best]
    anchor = anchor_s if anchor_s is not None else max(c.timestamp_s for c in fresh)
    return min(sharp, key=lambda c: (abs(c.timestamp_s - anchor), -c.timestamp_s))


def choose_keyframe(
    frames: Sequence[VideoFrame],
    *,
    now_s: float | None = None,
    max_age_s: float | None = None,
    anchor_s: float | None = None,
    tolerance: float = 0.1,
) -> VideoFrame | None:
    """``pick_keyframe`` over camera frames, their sharpness measured here."""
    return pick_keyframe(frames, sharpness_of=lambda f: sharpness(f.image_bgr), now_s=now_s,
                         max_age_s=max_age_s, anchor_s=anchor_s, tolerance=tolerance)
