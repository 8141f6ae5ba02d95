"""Text in view: OCR lines with boxes and scores, in reading order, prices and times intact.

``edge_models.ocr.TextReader`` reads text-line fragments. Here they become the
lines a person would read: fragments side by side on one line (a menu item and
its price, a word the detector split off) are joined left to right, lines go
top to bottom, and the recogniser's stray spaces inside a price or a time
("$ 3.49", "12 : 30") are closed up, so "$3.49" and "12:30" reach the router
as written.

A sign seen at an angle has slanted lines, and the upright boxes around slanted
lines overlap their neighbours above and below. So lines are found on the
fragments' own quadrilaterals turned level by the text's median slant (the
boxes handed on stay upright, in image pixels).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from glasses_agent.edge.perception.steps import PerceptionPart
from glasses_agent.frames import TextLine

if TYPE_CHECKING:
    from glasses_agent.config import Config

__all__ = [
    "BARE_PRICE",
    "PRICE",
    "TextReaderLike",
    "TextStep",
    "create_step",
    "find_prices",
    "find_times",
    "level_boxes",
    "price_lines",
    "read_text",
    "reading_order",
    "tidy",
]

UInt8Array = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]
# (tl, tr, br, bl) corners of a text fragment, [4,2] in image pixels.
Quad = npt.NDArray[np.float32]

_CURRENCY = "$€£¥₹"
_SPACE_AFTER_CURRENCY = re.compile(rf"(?<=[{_CURRENCY}])\s+(?=\d)")
_SPACE_IN_NUMBER = re.compile(r"(?<=\d)\s*([.:,])\s*(?=\d{2}(?!\d))")
_AMOUNT = r"\d+(?:[.,]\d{3})*(?:[.,]\d{1,2})?"
# A price as written on a tag or a menu line: with a currency ("$3.99", "2,50 €", "12 EUR").
PRICE = re.compile(
    rf"[{_CURRENCY}]\s?{_AMOUNT}|{_AMOUNT}\s?(?:[{_CURRENCY}]|"
    r"(?:usd|eur|gbp|chf|dollars?|euros?|pounds?)\b)",
    re.IGNORECASE,
)
# A bare amount with two decimals ("3.99", "2,50"): a price when no line shows a currency.
BARE_PRICE = re.compile(r"(?<![\d.,])\d{1,5}[.,]\d{2}(?![\d.,%])")
# "9:30", "17:45", "17h45", "7:05 pm"; "9.30" only with am/pm (a bare "9.30" is neither).
_TIME = re.compile(
    r"(?<![\d:.,$€£¥])(?:[01]?\d|2[0-3])(?:[:h][0-5]\d(?:\s?[AaPp]\.?[Mm]\.?)?"
    r"|\.[0-5]\d\s?[AaPp]\.?[Mm]\.?)(?![\d:])"
)


class TextReaderLike(Protocol):
    """``edge_models.ocr.TextReader``'s shape: fragments as (text, score, quad)."""

    def read_quads(self, image_bgr: UInt8Array) -> list[tuple[str, float, Quad]]: ...


def tidy(text: str) -> str:
    """Close the spaces the recogniser leaves inside prices and times; trim."""
    text = _SPACE_AFTER_CURRENCY.sub("", text.strip())
    return _SPACE_IN_NUMBER.sub(r"\1", text)


def reading_order(fragments: Sequence[TextLine], *, join_gap: float = 1.5,
                  layout: Sequence[tuple[float, float, float, float]] | None = None,
                  ) -> list[TextLine]:
    """Fragments grouped into lines (vertical overlap), each line left to right, lines top
    to bottom. Neighbours on a line closer than ``join_gap`` x the line's height are
    joined into one ``TextLine`` (its score is the lowest of its parts, its box the union).

    ``layout`` gives, for each fragment, the box to group and order it by (for slanted
    text, its box turned level: see ``level_boxes``); by default its own box."""
    boxes = list(layout) if layout is not None else [f.box for f in fragments]
    if len(boxes) != len(fragments):
        raise ValueError(f"{len(boxes)} layout boxes for {len(fragments)} fragments")
    rows: list[list[int]] = []
    for i in sorted(range(len(fragments)), key=lambda i: (boxes[i][1] + boxes[i][3]) / 2):
        y0, y1 = boxes[i][1], boxes[i][3]
        for row in rows:
            ry0 = min(boxes[j][1] for j in row)
            ry1 = max(boxes[j][3] for j in row)
            overlap = min(y1, ry1) - max(y0, ry0)
            if overlap >= 0.5 * min(y1 - y0, ry1 - ry0):
                row.append(i)
                break
        else:
            rows.append([i])
    groups: list[list[int]] = []
    for row in rows:  # rows were opened in order of their centres: top to bottom
        row.sort(key=lambda i: boxes[i][0])
        group = [row[0]]
        for i in row[1:]:
            height = max(max(boxes[j][3] - boxes[j][1] for j in group),
                         boxes[i][3] - boxes[i][1], 1)
            if boxes[i][0] - max(boxes[j][2] for j in group) <= join_gap * height:
                group.append(i)
            else:
                groups.append(group)
                group = [i]
        groups.append(group)
    return [_join([fragments[i] for i in group]) for group in groups]


def _join(parts: Sequence[TextLine]) -> TextLine:
    return TextLine(
        text=" ".join(p.text for p in parts),
        score=min(p.score for p in parts),
        box=(min(p.box[0] for p in parts), min(p.box[1] for p in parts),
             max(p.box[2] for p in parts), max(p.box[3] for p in parts)),
    )


def level_boxes(quads: Sequence[Quad]) -> list[tuple[float, float, float, float]]:
    """Each quad (tl, tr, br, bl) as an upright box of its own width and height, its
    centre turned by minus the quads' median slant: slanted lines become level rows."""
    if not quads:
        return []
    q = np.asarray(quads, dtype=np.float64).reshape(-1, 4, 2)
    top, bottom = q[:, 1] - q[:, 0], q[:, 2] - q[:, 3]
    slant = float(np.median(np.arctan2(top[:, 1] + bottom[:, 1], top[:, 0] + bottom[:, 0])))
    cos, sin = np.cos(slant), np.sin(slant)
    centre = q.mean(axis=1)
    cx = centre[:, 0] * cos + centre[:, 1] * sin
    cy = -centre[:, 0] * sin + centre[:, 1] * cos
    half_w = (np.hypot(*top.T) + np.hypot(*bottom.T)) / 4
    half_h = (np.hypot(*(q[:, 3] - q[:, 0]).T) + np.hypot(*(q[:, 2] - q[:, 1]).T)) / 4
    return [(float(x - w), float(y - h), float(x + w), float(y + h))
            for x, y, w, h in zip(cx, cy, half_w, half_h, strict=True)]


def read_text(reader: TextReaderLike, image_bgr: UInt8Array, *,
              min_score: float = 0.5) -> tuple[TextLine, ...]:
    """The text in ``image_bgr`` as tidy lines in reading order."""
    fragments: list[TextLine] = []
    quads: list[Quad] = []
    for text, score, quad in reader.read_quads(image_bgr):
        if score < min_score or not text.strip():
            continue
        q = np.asarray(quad, dtype=np.float32).reshape(4, 2)
        box = (int(np.floor(q[:, 0].min())), int(np.floor(q[:, 1].min())),
               int(np.ceil(q[:, 0].max())), int(np.ceil(q[:, 1].max())))
        fragments.append(TextLine(text=tidy(text), score=round(float(score), 4), box=box))
        quads.append(q)
    return tuple(TextLine(text=tidy(line.text), score=line.score, box=line.box)
                 for line in reading_order(fragments, layout=level_boxes(quads)))


def find_prices(lines: Sequence[TextLine]) -> list[str]:
    """Prices as written ("$3.49", "2,99 €"), in reading order."""
    return [m.group(0) for line in lines for m in PRICE.finditer(line.text)]


def price_lines(lines: Sequence[str]) -> list[str]:
    """The lines that show a price: those with a currency, or, when no line has one,
    those with a bare amount of two decimals (a menu: "Cake 3,50")."""
    marked = [line for line in lines if PRICE.search(line)]
    return marked or [line for line in lines if BARE_PRICE.search(line)]


def find_times(lines: Sequence[TextLine]) -> list[str]:
    """Clock times as written ("9:30", "17h45", "7:05 pm", "9.30 am"), in reading order."""
    return [m.group(0) for line in lines for m in _TIME.finditer(line.text)]


class TextStep:
    """The perception step: the text in view, as lines in reading order."""

    name = "ocr"

    def __init__(self, reader: TextReaderLike, *, min_score: float = 0.5,
                 models: tuple[str, ...] = ()) -> None:
        self.reader = reader
        self.min_score = min_score
        self.models = models

    def run(self, image_bgr: UInt8Array) -> PerceptionPart:
        return PerceptionPart(text=read_text(self.reader, image_bgr, min_score=self.min_score))


def create_step(config: Config) -> TextStep | None:
    """PP-OCR (detector in int8 where ``[perception] ocr_int8`` and the self-check agree);
    None with ``[perception] ocr`` off."""
    from edge_models.ocr import TextReader

    p, m = config.perception, config.models
    if not p.ocr:
        return None
    reader = TextReader(providers=m.providers, intra_op_threads=m.intra_op_threads,
                        int8=m.int8 if p.ocr_int8 else "never")
    return TextStep(reader, min_score=config.router.min_text_score,
                    models=("ppocr_det", "ppocr_rec", "ppocr_cls"))
