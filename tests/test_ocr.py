"""OCR: our PP-OCR pipeline against rapidocr's own, on rendered signs seen by a camera."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from edge_models.ocr import TextReader
from edge_models.signs import SIGN_TEXTS, render_sign, sign_set
from glasses_agent.errors import BadInputError


@pytest.fixture(scope="module")
def reader() -> TextReader:
    return TextReader()


@pytest.fixture(scope="module")
def rapid() -> object:
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error"})
    logging.getLogger("RapidOCR").setLevel(logging.ERROR)
    return engine


def _hard_signs() -> list[np.ndarray]:
    """Steeper tilt, more blur and noise, small text, plain and photo backgrounds."""
    from edge_models.photos import photo

    return [
        render_sign(("Coffee $4.99", "OPEN 10:30"), seed=41, tilt=0.35, blur_px=1.8, noise=12),
        render_sign(("Tea $2.15",), seed=42, size=(640, 480), tilt=0.3, blur_px=2.2, noise=8,
                    background=photo("gravel")),
        render_sign(("Closes at 21:45",), seed=43, size=(320, 240), tilt=0.2, blur_px=0.8,
                    noise=15, background=photo("brick")),
        render_sign(("Milk $1.29", "Eggs $3.49", "Bread $2.00"), seed=44, tilt=0.25,
                    blur_px=1.2, noise=10, background=photo("grass")),
    ]


def _rapid_lines(engine: object, image: np.ndarray) -> list[tuple[str, float, tuple[int, ...]]]:
    result = engine(image)  # type: ignore[operator]
    if result.txts is None or result.boxes is None or len(result.boxes) == 0:
        return []
    return [
        (text, round(float(score), 3),
         tuple(int(v) for v in (*np.floor(box.min(0)), *np.ceil(box.max(0)))))
        for text, score, box in zip(result.txts, result.scores, result.boxes, strict=True)
    ]


def test_matches_rapidocr_on_signs(reader: TextReader, rapid: object) -> None:
    images = [s.image_bgr for s in sign_set(8, seed=0)] + _hard_signs()
    for i, image in enumerate(images):
        ours = [(t, round(s, 3), b) for t, s, b in reader.read(image)]
        # the same fragments; the order is the glasses' (perception.text.reading_order)
        assert sorted(ours) == sorted(_rapid_lines(rapid, image)), f"image {i}"


def test_prices_and_times_stay_intact(reader: TextReader) -> None:
    image = render_sign(("OPEN 10:30", "Coffee $4.99"), seed=3, tilt=0.2, blur_px=1.0, noise=6)
    lines = sorted(text for text, _, _ in reader.read(image))
    assert lines == ["Coffee $4.99", "OPEN 10:30"]
    hard = " ".join(text for text, _, _ in reader.read(_hard_signs()[3]))
    for token in ("$1.29", "$3.49", "$2.00"):
        assert token in hard


def test_fragments_and_boxes(reader: TextReader) -> None:
    sign = sign_set(3, seed=0)[2]  # "Platform 3" over "Departs 14:45"
    lines = sorted(reader.read(sign.image_bgr), key=lambda line: line[2][1])  # by top edge
    assert [t for t, _, _ in lines] == list(SIGN_TEXTS[2])
    h, w = sign.image_bgr.shape[:2]
    for _, score, (x0, y0, x1, y1) in lines:
        assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h
        assert 0.5 <= score <= 1.0


def test_upside_down_sign_is_turned(reader: TextReader) -> None:
    image = render_sign(("EXIT", "Gate B12"), seed=5, tilt=0.1)
    turned = np.ascontiguousarray(image[::-1, ::-1])
    assert {t for t, _, _ in reader.read(turned)} == {"EXIT", "Gate B12"}


def test_int8_detector_reads_the_same_where_it_is_used(reader: TextReader) -> None:
    assert TextReader(int8=True).models["det"] == "ppocr_det_int8"  # "always": unchecked
    assert reader.models["det"] == "ppocr_det" and reader.choices["det"].variant == "fp32"
    auto = TextReader(int8="auto")  # the self-check decides on this CPU
    choice = auto.choices["det"]
    assert auto.models["det"] == choice.name
    if choice.variant == "fp32":
        assert "disagrees" in choice.reason or "not faster" in choice.reason
        return
    for sign in sign_set(4, seed=20):
        assert sorted(t for t, _, _ in auto.read(sign.image_bgr)) == \
            sorted(t for t, _, _ in reader.read(sign.image_bgr))


def test_blank_and_tiny_images(reader: TextReader) -> None:
    assert reader.read(np.full((480, 640, 3), 200, np.uint8)) == []
    assert reader.read(np.full((12, 400, 3), 255, np.uint8)) == []


def test_bad_input_is_a_clear_error(reader: TextReader) -> None:
    with pytest.raises(BadInputError, match="uint8"):
        reader.read(np.zeros((100, 100, 3), np.float64))
