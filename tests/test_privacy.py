"""Privacy: outgoing JPEGs have faces blurred, checked by a second, different detector."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from perception_helpers import face_detector, paste, photo

from glasses_agent.perception.privacy import (
    FaceRedactor,
    PrivacyOnError,
    blur_regions,
    enlarge_box,
)
from glasses_agent.sources.camera import PrivacySwitch

PAIRS = [("mtcnn", "haar"), ("haar", "mtcnn")]


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


@pytest.mark.parametrize("primary,verifier", PAIRS)
@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_outgoing_jpeg_has_no_face_left(primary: str, verifier: str, name: str) -> None:
    image = photo(name)
    assert face_detector(primary).detect(image) and face_detector(verifier).detect(image)
    redactor = FaceRedactor(detector=face_detector(primary), verifier=face_detector(verifier))
    out = redactor.outgoing_jpeg(image)
    sent = _decode(out.jpeg)
    assert out.verified and out.faces_blurred >= 1 and not out.whole_frame_blurred
    assert out.jpeg[:2] == b"\xff\xd8" and sent.shape == image.shape
    # Neither detector finds a face in what leaves the device.
    assert face_detector("haar").detect(sent) == []
    assert face_detector("mtcnn").detect(sent) == []
    # The face region changed a lot; the rest of the picture is intact (JPEG aside).
    x0, y0, x1, y1, _ = face_detector(primary).detect(image)[0]
    face_diff = np.abs(sent[y0:y1, x0:x1].astype(int) - image[y0:y1, x0:x1].astype(int))
    assert face_diff.mean() > 15
    ex0, ey0, ex1, ey1 = enlarge_box((x0, y0, x1, y1), (image.shape[1], image.shape[0]))
    outside = np.ones(image.shape[:2], bool)
    outside[ey0:ey1, ex0:ex1] = False
    assert float(np.abs(sent.astype(int) - image.astype(int))[outside].mean()) < 5


def test_faces_that_perception_found_are_used_and_still_checked() -> None:
    image = photo("grace_hopper")
    redactor = FaceRedactor(detector=face_detector("mtcnn"), verifier=face_detector("haar"))
    # Perception's boxes missed the face (a stale box elsewhere): the check catches it.
    out = redactor.outgoing_jpeg(image, faces=[(0, 0, 40, 40)])
    assert out.verified and out.passes >= 2 and out.faces_blurred >= 2
    assert face_detector("haar").detect(_decode(out.jpeg)) == []


def test_a_frame_with_several_faces() -> None:
    scene = np.full((520, 1000, 3), 200, np.uint8)
    scene = paste(scene, cv2.resize(photo("grace_hopper"), (400, 469)), 20, 20)
    scene = paste(scene, photo("astronaut")[:400, 60:460], 560, 60)
    redactor = FaceRedactor(detector=face_detector("haar"), verifier=face_detector("mtcnn"))
    out = redactor.outgoing_jpeg(scene)
    assert out.faces_blurred >= 2 and out.verified
    sent = _decode(out.jpeg)
    assert face_detector("mtcnn").detect(sent) == [] and face_detector("haar").detect(sent) == []


def test_no_faces_no_change_but_a_reencode() -> None:
    image = photo("coffee")
    redactor = FaceRedactor(detector=face_detector("haar"), verifier=face_detector("mtcnn"))
    out = redactor.outgoing_jpeg(image)
    assert out.faces_blurred == 0 and out.verified and out.passes == 1
    assert float(np.abs(_decode(out.jpeg).astype(int) - image.astype(int)).mean()) < 5


def test_privacy_switch_lets_nothing_leave() -> None:
    privacy = PrivacySwitch(on=True)
    redactor = FaceRedactor(detector=face_detector("haar"), verifier=face_detector("mtcnn"),
                            privacy=privacy)
    with pytest.raises(PrivacyOnError, match="privacy switch is on"):
        redactor.outgoing_jpeg(photo("coffee"))
    privacy.toggle()
    assert redactor.outgoing_jpeg(photo("coffee")).verified


def test_blur_regions_and_enlarged_boxes_stay_inside_the_image() -> None:
    assert enlarge_box((0, 0, 10, 10), (20, 20)) == (0, 0, 14, 14)
    assert enlarge_box((90, 90, 100, 100), (100, 100))[2:] == (100, 100)
    image = photo("chelsea")
    out = blur_regions(image, [(-5, -5, 3000, 3000), (10, 10, 11, 11)])
    assert out.shape == image.shape and out.dtype == np.uint8
    assert blur_regions(image, []) is not image


def test_the_verifier_is_the_other_kind_of_detector() -> None:
    from glasses_agent.config import load_config

    for faces, other in (("haar", "mtcnn"), ("mtcnn", "haar")):
        config = load_config(environ={}, overrides=[f"perception.faces={faces}"])
        redactor = FaceRedactor.from_config(config)
        assert redactor.detector.kind == faces  # type: ignore[attr-defined]
        assert redactor.verifier.kind == other  # type: ignore[attr-defined]
        assert redactor.outgoing_jpeg(photo("astronaut")).verified
