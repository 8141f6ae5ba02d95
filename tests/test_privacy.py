"""Privacy: outgoing JPEGs have faces blurred, checked by a second, different detector.

The default pair is haar + haar_check (both OpenCV cascades, BSD-style license);
the pairs with MTCNN are opt-in (its license is unclear).
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from support.images import face_detector, paste, photo

from edge_models.faces import FACE_KINDS
from edge_models.photos import photo as sample_photo
from glasses_agent.config import Config, load_config
from glasses_agent.edge.perception.privacy import (
    FaceRedactor,
    PrivacyOnError,
    blur_regions,
    enlarge_box,
)
from glasses_agent.edge.sources.camera import PrivacySwitch
from glasses_agent.errors import BadInputError

# (primary, verifier): the default first, then the opt-in ones with MTCNN.
PAIRS = [("haar", "haar_check"), ("mtcnn", "haar_check"), ("mtcnn", "haar"), ("haar", "mtcnn")]
# The default pair on both photos, each opt-in pair on one (the cascades are slow).
CASES = [("haar", "haar_check", "astronaut"), ("haar", "haar_check", "grace_hopper"),
         ("mtcnn", "haar_check", "grace_hopper"), ("mtcnn", "haar", "astronaut"),
         ("haar", "mtcnn", "grace_hopper")]


def _decode(jpeg: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _default_redactor(privacy: PrivacySwitch | None = None) -> FaceRedactor:
    return FaceRedactor(detector=face_detector("haar"), verifier=face_detector("haar_check"),
                        privacy=privacy)


def _faces_found(image: np.ndarray, *, besides: tuple[str, ...] = ()) -> dict[str, int]:
    """How many faces each kind of detector but ``besides`` finds in ``image`` (a verified
    ``OutgoingImage`` already says that its primary and verifier found none)."""
    return {kind: len(face_detector(kind).detect(image)) for kind in FACE_KINDS
            if kind not in besides}


@pytest.mark.parametrize("primary,verifier,name", CASES)
def test_outgoing_jpeg_has_no_face_left(primary: str, verifier: str, name: str) -> None:
    image = photo(name)
    found = face_detector(primary).detect(image)
    assert found
    redactor = FaceRedactor(detector=face_detector(primary), verifier=face_detector(verifier))
    out = redactor.outgoing_jpeg(image)
    sent = _decode(out.jpeg)
    assert out.verified and out.faces_blurred >= 1 and not out.whole_frame_blurred
    assert out.jpeg[:2] == b"\xff\xd8" and sent.shape == image.shape
    # Verified: neither detector of the pair finds a face in what leaves the device;
    # nor does the third kind.
    (third,) = _faces_found(sent, besides=(primary, verifier)).values()
    assert third == 0
    # The face region changed a lot; the rest of the picture is intact (JPEG aside).
    x0, y0, x1, y1, _ = found[0]
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


def test_the_default_verifier_catches_a_turned_face_the_primary_misses() -> None:
    # The cameraman looks down into his camera: the frontal Haar cascade misses him,
    # haar_check's mirrored profile cascade finds him, and he is blurred on pass 2.
    image = photo("camera")
    assert face_detector("haar").detect(image) == []
    ((mx0, my0, mx1, my1, _),) = face_detector("mtcnn").detect(image)  # an independent judge
    out = _default_redactor().outgoing_jpeg(image)
    assert out.verified and out.passes == 2 and out.faces_blurred == 1
    assert not out.whole_frame_blurred
    sent = _decode(out.jpeg)
    assert face_detector("mtcnn").detect(sent) == []
    face_diff = np.abs(sent[my0:my1, mx0:mx1].astype(int) - image[my0:my1, mx0:mx1].astype(int))
    assert face_diff.mean() > 15


def test_a_frame_with_several_faces() -> None:
    scene = np.full((520, 1000, 3), 200, np.uint8)
    scene = paste(scene, cv2.resize(photo("grace_hopper"), (400, 469)), 20, 20)
    scene = paste(scene, photo("astronaut")[:400, 60:460], 560, 60)
    out = _default_redactor().outgoing_jpeg(scene)
    assert out.faces_blurred >= 2 and out.verified and not out.whole_frame_blurred
    assert _faces_found(_decode(out.jpeg), besides=("haar", "haar_check")) == {"mtcnn": 0}


@pytest.mark.parametrize("name", ["coffee", "chelsea", "rocket", "motorcycle_left"])
def test_no_faces_no_change_but_a_reencode(name: str) -> None:
    # The default verifier is sensitive, but finds no face in ordinary photos without
    # one: nothing is blurred (motorcycle_left: one small false find by the primary
    # in the re-encoded JPEG) and never the whole frame.
    image = sample_photo(name)
    out = _default_redactor().outgoing_jpeg(image)
    assert out.verified and not out.whole_frame_blurred
    assert out.faces_blurred == (1 if name == "motorcycle_left" else 0)
    assert out.passes == out.faces_blurred + 1
    assert float(np.abs(_decode(out.jpeg).astype(int) - image.astype(int)).mean()) < 6


def test_privacy_switch_lets_nothing_leave() -> None:
    privacy = PrivacySwitch(on=True)
    redactor = _default_redactor(privacy)
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


def test_the_default_configuration_uses_only_license_clear_models(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import edge_models.faces
    from edge_models.registry import get_spec

    loaded: list[str] = []

    def recording_get_spec(name: str) -> object:
        loaded.append(name)
        return get_spec(name)

    monkeypatch.setattr(edge_models.faces, "get_spec", recording_get_spec)
    redactor = FaceRedactor.from_config(Config())  # the shipped defaults
    assert redactor.detector.kind == "haar"  # type: ignore[attr-defined]
    assert redactor.verifier.kind == "haar_check"  # type: ignore[attr-defined]
    assert sorted(loaded) == ["haar_frontalface_alt2", "haar_frontalface_default",
                              "haar_profileface"]
    for name in loaded:
        terms = get_spec(name).license
        assert terms.startswith("Intel License Agreement") and "unclear" not in terms
    assert redactor.outgoing_jpeg(photo("astronaut")).verified


@pytest.mark.parametrize("faces,face_check", PAIRS)
def test_the_verifier_comes_from_the_configuration(faces: str, face_check: str) -> None:
    config = load_config(environ={}, overrides=[f"perception.faces={faces}",
                                                f"perception.face_check={face_check}"])
    redactor = FaceRedactor.from_config(config, detector=face_detector(faces))
    assert redactor.detector is face_detector(faces)
    assert redactor.verifier.kind == face_check  # type: ignore[attr-defined]


def test_a_verifier_like_the_primary_or_unknown_is_refused() -> None:
    for faces in ("haar", "mtcnn"):
        config = load_config(environ={}, overrides=[f"perception.faces={faces}",
                                                    f"perception.face_check={faces}"])
        with pytest.raises(BadInputError, match="face_check must differ from faces"):
            FaceRedactor.from_config(config)
    config = load_config(environ={}, overrides=["perception.face_check=yolo"])
    with pytest.raises(BadInputError, match="face_check must be one of"):
        FaceRedactor.from_config(config)
    config = load_config(environ={}, overrides=["perception.faces=haar_check"])
    with pytest.raises(BadInputError, match="faces must be one of"):
        FaceRedactor.from_config(config)
