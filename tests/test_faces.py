"""Faces (privacy) on real photos with and without faces: Haar (default), haar_check (the
default verifier: other OpenCV cascades, frontal and profile) and MTCNN (opt-in)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_models.faces import FaceDetector, nms
from edge_models.photos import lfw_faces, photo
from glasses_agent.errors import BadInputError

# Where the faces are (x0, y0, x1, y1), checked by eye.
KNOWN_FACES = {"astronaut": (175, 60, 270, 175), "grace_hopper": (160, 100, 360, 340)}
NO_FACES = ("coffee", "chelsea", "rocket", "motorcycle_left", "horse", "coins", "brick")


@pytest.fixture(scope="module", params=["haar", "haar_check", "mtcnn"])
def detector(request: pytest.FixtureRequest) -> FaceDetector:
    return FaceDetector(kind=request.param)


def _iou(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _cells(faces: list[tuple[int, int, int, int, float]], cell: int = 80) -> set[tuple[int, int]]:
    """The mosaic cells (row, column) that hold a box's centre."""
    return {((y0 + y1) // 2 // cell, (x0 + x1) // 2 // cell) for x0, y0, x1, y1, _ in faces}


def _mosaic(faces: np.ndarray, cell: int = 80, cols: int = 10) -> np.ndarray:
    import cv2

    rows = -(-len(faces) // cols)
    out = np.full((rows * cell, cols * cell, 3), 128, np.uint8)
    for i, face in enumerate(faces):
        r, c = divmod(i, cols)
        big = cv2.resize(face, (cell - 16, cell - 16), interpolation=cv2.INTER_CUBIC)
        out[r * cell + 8:(r + 1) * cell - 8, c * cell + 8:(c + 1) * cell - 8] = big[:, :, None]
    return out


@pytest.mark.parametrize("name", sorted(KNOWN_FACES))
def test_finds_the_face(detector: FaceDetector, name: str) -> None:
    faces = detector.detect(photo(name))
    assert len(faces) == 1, faces
    x0, y0, x1, y1, score = faces[0]
    assert _iou((x0, y0, x1, y1), KNOWN_FACES[name]) > 0.5
    assert 0.5 < score <= 1.0


def test_no_faces_where_there_are_none(detector: FaceDetector) -> None:
    names = NO_FACES
    if detector.kind == "haar_check":
        # The sensitive verifier sees 3 faces in the coins (docs/models.md); coffee,
        # chelsea, rocket and motorcycle_left are checked on the outgoing path in
        # test_privacy.py (the slowest detector is run once per photo).
        names = ("horse", "brick")
    for name in names:
        assert detector.detect(photo(name)) == [], name


def test_recall_on_lfw_faces(detector: FaceDetector) -> None:
    faces = detector.detect(_mosaic(lfw_faces()))
    cells = _cells(faces)
    minimum = {"mtcnn": 98, "haar": 88, "haar_check": 90}[detector.kind]
    assert len(cells) >= minimum
    # One box per face (haar_check: one face also has a box on its chin).
    assert len(faces) - len(cells) <= (1 if detector.kind == "haar_check" else 0)
    assert detector.detect(_mosaic(lfw_faces(faces=False))) == []


def test_mtcnn_and_haar_check_find_the_half_turned_face_haar_misses() -> None:
    # The cameraman looks down into his camera: MTCNN finds him, and so does haar_check's
    # profile cascade (on the mirror image); Haar (frontal) does not.
    assert FaceDetector(kind="haar").detect(photo("camera")) == []
    (mtcnn,) = FaceDetector(kind="mtcnn").detect(photo("camera"))
    (check,) = FaceDetector(kind="haar_check").detect(photo("camera"))
    assert _iou(check[:4], mtcnn[:4]) > 0.4


def test_haar_check_finds_faces_a_coarse_pixelation_left() -> None:
    # A verifier must flag a face the blur left recognisable: 50 LFW faces, each
    # pixelated to 10 x 10 blocks. Measured: haar_check 35, Haar 19, MTCNN 2.
    import cv2

    image = _mosaic(lfw_faces()[:50])
    for r in range(5):
        for c in range(10):
            face = image[r * 80 + 8:(r + 1) * 80 - 8, c * 80 + 8:(c + 1) * 80 - 8]
            small = cv2.resize(face, (10, 10), interpolation=cv2.INTER_AREA)
            face[:] = cv2.resize(small, (64, 64), interpolation=cv2.INTER_NEAREST)
    found = {kind: len(_cells(FaceDetector(kind=kind).detect(image)))
             for kind in ("haar", "haar_check")}
    assert found["haar_check"] >= 30 and found["haar"] <= 25, found


def test_min_face_size_is_respected() -> None:
    # The astronaut's face is about 95 px; MTCNN's minimum is approximate (its pyramid's
    # first scale), Haar's exact.
    image = photo("astronaut")
    assert FaceDetector(kind="haar", min_face_px=120).detect(image) == []
    assert FaceDetector(kind="haar_check", min_face_px=120).detect(image) == []
    assert FaceDetector(kind="mtcnn", min_face_px=300).detect(image) == []


def test_nms_keeps_the_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.8], [50, 50, 60, 60, 0.7]])
    assert sorted(nms(boxes, 0.5).tolist()) == [0, 2]
    assert nms(np.zeros((0, 5)), 0.5).size == 0


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(BadInputError, match="kind"):
        FaceDetector(kind="yolo")
    with pytest.raises(BadInputError, match="min_face_px"):
        FaceDetector(min_face_px=4)
    with pytest.raises(BadInputError):
        FaceDetector().detect(np.zeros((5, 5), np.float32))
