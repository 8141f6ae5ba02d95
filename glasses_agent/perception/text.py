"""Text in view: OCR lines with boxes and scores, in reading order, prices and times intact.

``edge_models.ocr.TextReader`` reads text-line fragments. Here they become the
lines a person would read: fragments side by side on one line (a menu item and
its price, a word the detector split off) are joined left to right, lines go
top to bottom, and the recogniser's stray spaces inside a price or a time
("$ 3.49", "12 : 30") are closed up, so "$3.49" and "12:30" reach the router
as written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

import numpy as np
import numpy.typing as npt

from glasses_agent.frames import TextLine

__all__ = [
    "TextReaderLike",
    "find_prices",
    "find_times",
    "read_text",
    "reading_order",
    "tidy",
]

UInt8Array = npt.NDArray[np.uint8]
Box = tuple[int, int, int, int]

_CURRENCY = "$€£¥"
_SPACE_AFTER_CURRENCY = re.compile(rf"(?<=[{_CURRENCY}])\s+(?=\d)")
_SPACE_IN_NUMBER = re.compile(r"(?<=\d)\s*([.:,])\s*(?=\d{2}(?!\d))")
_PRICE = re.compile(
    rf"[{_CURRENCY}]\s?\d+(?:[.,]\d{{2}})?|\d+(?:[.,]\d{{2}})?\s?[{_CURRENCY}]"
)
# "9:30", "17:45", "17h45", "7:05 pm"; "9.30" only with am/pm (else it is a price).
_TIME = re.compile(
    r"(?<![\d:.,$€£¥])(?:[01]?\d|2[0-3])(?:[:h][0-5]\d(?:\s?[AaPp]\.?[Mm]\.?)?"
    r"|\.[0-5]\d\s?[AaPp]\.?[Mm]\.?)(?![\d:])"
)


class TextReaderLike(Protocol):
    """``edge_models.ocr.TextReader``'s shape."""

    def read(self, image_bgr: UInt8Array) -> list[tuple[str, float, Box]]: ...


def tidy(text: str) -> str:
    """Close the spaces the recogniser leaves inside prices and times; trim."""
    text = _SPACE_AFTER_CURRENCY.sub("", text.strip())
    return _SPACE_IN_NUMBER.sub(r"\1", text)


def reading_order(fragments: Sequence[TextLine], *, join_gap: float = 1.5) -> list[TextLine]:
    """Fragments grouped into lines (vertical overlap), each line left to right, lines top
    to bottom. Neighbours on a line closer than ``join_gap`` x the line's height are
    joined into one ``TextLine`` (its score is the lowest of its parts)."""
    rows: list[list[TextLine]] = []
    for frag in sorted(fragments, key=lambda f: (f.box[1] + f.box[3]) / 2):
        y0, y1 = frag.box[1], frag.box[3]
        for row in rows:
            ry0 = min(f.box[1] for f in row)
            ry1 = max(f.box[3] for f in row)
            overlap = min(y1, ry1) - max(y0, ry0)
            if overlap >= 0.5 * min(y1 - y0, ry1 - ry0):
                row.append(frag)
                break
        else:
            rows.append([frag])
    lines: list[TextLine] = []
    for row in rows:  # rows were opened in order of their centres: top to bottom
        row.sort(key=lambda f: f.box[0])
        current = row[0]
        for frag in row[1:]:
            height = max(current.box[3] - current.box[1], frag.box[3] - frag.box[1], 1)
            if frag.box[0] - current.box[2] <= join_gap * height:
                current = TextLine(
                    text=f"{current.text} {frag.text}",
                    score=min(current.score, frag.score),
                    box=(min(current.box[0], frag.box[0]), min(current.box[1], frag.box[1]),
                         max(current.box[2], frag.box[2]), max(current.box[3], frag.box[3])),
                )
            else:
                lines.append(current)
                current = frag
        lines.append(current)
    return lines


def read_text(reader: TextReaderLike, image_bgr: UInt8Array, *,
              min_score: float = 0.5) -> tuple[TextLine, ...]:
    """The text in ``image_bgr`` as tidy lines in reading order."""
    fragments = [TextLine(text=tidy(text), score=round(float(score), 4),
                          box=(int(box[0]), int(box[1]), int(box[2]), int(box[3])))
                 for text, score, box in reader.read(image_bgr)
                 if score >= min_score and text.strip()]
    return tuple(TextLine(text=tidy(line.text), score=line.score, box=line.box)
                 for line in reading_order(fragments))


def find_prices(lines: Sequence[TextLine]) -> list[str]:
    """Prices as written ("$3.49", "2,99 €"), in reading order."""
    return [m.group(0) for line in lines for m in _PRICE.finditer(line.text)]


def find_times(lines: Sequence[TextLine]) -> list[str]:
    """Clock times as written ("9:30", "17h45", "7:05 pm", "9.30 am"), in reading order."""
    return [m.group(0) for line in lines for m in _TIME.finditer(line.text)]
