"""Keyframe choice: the sharpest frame of a ring of recent frames, not the last one."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from support.images import blur, motion_blur, noise, photo

from glasses_agent.edge.perception.keyframe import choose_keyframe, sharpness
from glasses_agent.frames import VideoFrame


def _frame(image: np.ndarray, index: int) -> VideoFrame:
    return VideoFrame(timestamp_s=index / 30, image_bgr=image, index=index, source="ring")


@pytest.mark.parametrize("name", ["coffee", "chelsea", "astronaut", "grace_hopper"])
def test_sharpness_falls_with_blur(name: str) -> None:
    image = photo(name)
    scores = [sharpness(blur(image, s)) if s else sharpness(image) for s in (0, 1.5, 3, 6)]
    assert scores == sorted(scores, reverse=True)
    assert scores[0] > 1.5 * scores[1]
    assert sharpness(motion_blur(image, 15, angle_deg=20)) < scores[0] / 2


@pytest.mark.parametrize("sharp_at", [0, 3, 5])
def test_the_sharp_frame_is_chosen_from_a_blurred_ring(sharp_at: int) -> None:
    base = cv2.resize(photo("coffee"), (640, 427), interpolation=cv2.INTER_AREA)
    ring = []
    for i in range(8):
        if i == sharp_at:
            image = noise(base, 3.0, seed=i)
        elif i % 2:
            image = noise(motion_blur(base, 9 + i, angle_deg=15 * i), 3.0, seed=i)
        else:
            image = noise(blur(base, 1.5 + 0.2 * i), 3.0, seed=i)
        ring.append(_frame(image, i))
    chosen = choose_keyframe(ring)
    assert chosen is not None and chosen.index == sharp_at
    assert choose_keyframe(ring[sharp_at:sharp_at + 1]) is ring[sharp_at]


def test_ties_go_to_the_newest_and_old_frames_are_left_out() -> None:
    image = photo("chelsea")
    ring = [_frame(image, i) for i in range(5)]
    chosen = choose_keyframe(ring)
    assert chosen is not None and chosen.index == 4
    # The sharp frame 0 is too old: the sharpest of the recent ones (1, 2, 3) wins.
    mixed = [_frame(image, 0)] + [_frame(blur(image, 2 + i), i) for i in range(1, 4)]
    assert choose_keyframe(mixed) is mixed[0]
    chosen = choose_keyframe(mixed, now_s=mixed[-1].timestamp_s, max_age_s=0.08)
    assert chosen is not None and chosen.index == 1
    assert choose_keyframe([]) is None
    assert choose_keyframe(mixed, now_s=10.0, max_age_s=0.1) is None  # all stale: none


def test_sharpness_is_scale_independent_enough_and_fast_to_compare() -> None:
    image = photo("astronaut")
    small = cv2.resize(image, (320, 320), interpolation=cv2.INTER_AREA)
    # Both are measured at 320 px wide, so the same scene scores about the same.
    assert sharpness(small) == pytest.approx(sharpness(image), rel=0.25)
    assert sharpness(np.full((64, 64, 3), 128, np.uint8)) == 0.0
