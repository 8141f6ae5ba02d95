"""Text in view: signs and price tags rendered here, photographed, read through our pipeline."""

from __future__ import annotations

import pytest
from support.images import perceiver, photograph, render_sign

from glasses_agent.edge.perception.text import find_prices, find_times, reading_order, tidy
from glasses_agent.frames import TextLine, VideoFrame

# (strength of the perspective warp, blur sigma px, noise sigma): mild, and a hard look.
LOOKS = [(0.05, 0.9, 4.0), (0.12, 1.6, 8.0)]


def _read(image: object) -> list[TextLine]:
    frame = VideoFrame(timestamp_s=0.0, image_bgr=image, index=0)  # type: ignore[arg-type]
    return list(perceiver().perceive(frame).text)


@pytest.mark.parametrize("strength,blur_px,noise_sigma", LOOKS)
def test_a_cafe_sign_with_hours_and_prices(strength: float, blur_px: float,
                                           noise_sigma: float) -> None:
    sign = render_sign(["OPEN 9:30 - 17:45", "Espresso $3.49", "Latte $4.25"])
    image = photograph(sign, background="coffee", scale=0.7, at=(30, 40), strength=strength,
                       blur_px=blur_px, noise_sigma=noise_sigma, seed=3)
    lines = _read(image)
    texts = [line.text for line in lines]
    assert texts[1:] == ["Espresso $3.49", "Latte $4.25"]
    assert texts[0].replace(" ", "") == "OPEN9:30-17:45"
    assert find_prices(lines) == ["$3.49", "$4.25"]
    assert find_times(lines) == ["9:30", "17:45"]
    for line in lines:
        x0, y0, x1, y1 = line.box
        assert 0 <= x0 < x1 <= 600 and 0 <= y0 < y1 <= 400 and 0.5 <= line.score <= 1.0
    tops = [line.box[1] for line in lines]
    assert tops == sorted(tops)


@pytest.mark.parametrize("strength,blur_px,noise_sigma", LOOKS)
def test_a_price_tag_in_euros(strength: float, blur_px: float, noise_sigma: float) -> None:
    tag = render_sign(["SALE", "2,99 €", "was 3,49 €"], size_px=40, bg=(60, 220, 250))
    image = photograph(tag, background="chelsea", scale=0.8, at=(20, 20), strength=strength,
                       blur_px=blur_px, noise_sigma=noise_sigma, seed=5)
    lines = _read(image)
    assert [line.text for line in lines] == ["SALE", "2,99 €", "was 3,49 €"]
    assert find_prices(lines) == ["2,99 €", "3,49 €"]


def test_a_platform_sign_light_on_dark_and_small_print() -> None:
    board = render_sign(["PLATFORM 2", "Next train 14:05"], size_px=36, fg=(255, 255, 255),
                        bg=(120, 60, 20))
    image = photograph(board, background="astronaut", scale=0.8, at=(10, 300),
                       strength=0.1, blur_px=1.4, noise_sigma=6.0, seed=7)
    lines = _read(image)
    assert [line.text for line in lines] == ["PLATFORM 2", "Next train 14:05"]
    assert find_times(lines) == ["14:05"]
    menu = render_sign(["Croissant $2.10", "Muffin $2.75"], size_px=22, bold=False)
    image = photograph(menu, background="coffee", at=(250, 260), strength=0.08, blur_px=1.2,
                       noise_sigma=6.0, seed=9)
    assert find_prices(_read(image)) == ["$2.10", "$2.75"]


def _line(text: str, box: tuple[int, int, int, int], score: float = 0.9) -> TextLine:
    return TextLine(text=text, score=score, box=box)


def test_reading_order_joins_a_line_and_keeps_columns_apart() -> None:
    fragments = [
        _line("$3.49", (210, 52, 270, 80), 0.8),  # the price, a little lower than its item
        _line("Espresso", (20, 50, 180, 78)),
        _line("OPEN", (20, 10, 90, 38)),
        _line("Latte", (20, 90, 100, 118)),
        _line("Tea", (600, 92, 650, 118)),  # far right: another column
    ]
    lines = reading_order(fragments)
    assert [line.text for line in lines] == ["OPEN", "Espresso $3.49", "Latte", "Tea"]
    assert lines[1].box == (20, 50, 270, 80) and lines[1].score == 0.8


def test_prices_and_times_are_kept_intact() -> None:
    assert tidy(" $ 3 . 49 ") == "$3.49"
    assert tidy("Open 12 : 30") == "Open 12:30"
    assert tidy("1,000 people") == "1,000 people"
    lines = [_line(t, (0, 0, 1, 1)) for t in
             ["Mon-Fri 7:05 pm", "Lunch 12h30", "at 9.30 am", "Tea 3.49", "€ 5", "123:45"]]
    assert find_times(lines) == ["7:05 pm", "12h30", "9.30 am"]
    assert find_prices(lines) == ["€ 5"]


def _turned(image: object, degrees: float) -> object:
    import cv2
    import numpy as np

    h, w = image.shape[:2]  # type: ignore[attr-defined]
    matrix = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    out = cv2.warpAffine(image, matrix, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(out)


@pytest.mark.parametrize("degrees", [-7.0, 6.0])
def test_a_menu_seen_at_a_slant_keeps_its_rows(degrees: float) -> None:
    # Items and prices in two columns, turned a few degrees: the upright boxes of the
    # slanted lines overlap the rows above and below, which once joined "Tea Cappuccino".
    import numpy as np

    items = render_sign(["Espresso", "Cappuccino", "Tea"], size_px=40)
    prices = render_sign(["$2.50", "$3.40", "$1.90"], size_px=40)
    gap = np.full((items.shape[0], 120, 3), items[0, 0], np.uint8)
    menu = _turned(np.hstack([items, gap, prices]), degrees)
    image = photograph(menu, background="coffee", scale=0.9, at=(20, 60), strength=0.05,
                       blur_px=1.0, noise_sigma=4.0, seed=11)
    lines = _read(image)
    assert " ".join(line.text for line in lines) == \
        "Espresso $2.50 Cappuccino $3.40 Tea $1.90"
    assert find_prices(lines) == ["$2.50", "$3.40", "$1.90"]
