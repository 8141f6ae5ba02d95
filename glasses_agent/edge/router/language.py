"""The router's words: transcripts normalised for matching, and replies said one way.

Understanding: ``normalize`` (lower case, curly quotes straightened, punctuation
dropped, a leading wake phrase and politeness such as "hey glasses, can you
please ..." removed), the pattern builders skills use (``whole``: the whole
remaining utterance; ``anywhere``), and ``is_visual`` (does a question refer
to what is in view). Saying: text read out, barcodes, notes turned to the
second person.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import urlsplit

from glasses_agent.frames import Barcode
from glasses_agent.spoken import article, barcode_type_name

__all__ = [
    "THIS",
    "anywhere",
    "is_visual",
    "normalize",
    "read_out",
    "second_person",
    "spoken_barcode",
    "whole",
]

MAX_READ_CHARS = 280

_LEADING = re.compile(
    r"^(?:(?:hey|ok|okay|hi) glasses\s*|hey\s+|ok\s+|okay\s+|so\s+|um+\s+|uh+\s+|please\s+|"
    r"(?:can|could|would|will) you(?: please)?\s+|tell me\s+(?=what|whats|which)|"
    r"i want to know\s+|do you know\s+)+"
)
_TRAILING = re.compile(r"(?:\s+(?:please|for me|now|right now|again))+$")
# "this", "that", ...: what a wearer points at.
THIS = r"(?:this|that|it|these|those)"
_VISUAL = re.compile(
    r"\b(?:this|that|these|those|here|there|look|looking|see|seeing|front|sign|signs|read|"
    r"written|say|says|wearing|colou?r|picture|photo|view|label|menu|screen|holding|point|"
    r"pointing)\b"
)


def normalize(text: str) -> str:
    """Lower case, straight apostrophes kept, other punctuation gone, fillers stripped."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    text = re.sub(r"'(?![a-z])|(?<![a-z])'", " ", text)  # quotes, not apostrophes
    text = " ".join(text.split())
    text = _LEADING.sub("", text)
    text = _TRAILING.sub("", text)
    return text.strip()


def whole(pattern: str) -> re.Pattern[str]:
    """A pattern that must match the whole (normalised) utterance."""
    return re.compile(rf"^(?:{pattern})$")


def anywhere(pattern: str) -> re.Pattern[str]:
    """A pattern that may match anywhere, on word boundaries."""
    return re.compile(rf"\b(?:{pattern})\b")


def is_visual(text: str) -> bool:
    """Does the question refer to what is in view ("this", "look", "sign", ...)?"""
    return bool(_VISUAL.search(normalize(text)))


def read_out(lines: Sequence[str]) -> str:
    """Lines as one spoken text, cut at ``MAX_READ_CHARS``."""
    said = ". ".join(line.rstrip(".,;: ") for line in lines)
    if len(said) > MAX_READ_CHARS:
        said = said[:MAX_READ_CHARS].rsplit(" ", 1)[0] + ", and more"
    return f"{said}."


def spoken_barcode(barcode: Barcode) -> str:
    kind = barcode_type_name(barcode.type)
    data = barcode.data.strip()
    if kind == "QR code":
        parts = urlsplit(data)
        if parts.scheme in ("http", "https") and parts.netloc:
            shown = (parts.netloc + parts.path).rstrip("/")
            return f"It's a QR code linking to {shown}."
        return f"It's a QR code that says: {data[:MAX_READ_CHARS]}."
    return f"It's {article(kind)} {kind} barcode: {data}."


_PERSON = {"i": "you", "my": "your", "me": "you", "i'm": "you're", "mine": "yours",
           "myself": "yourself", "am": "are", "i've": "you've", "i'll": "you'll"}


def second_person(text: str) -> str:
    """"where I parked" -> "where you parked"."""
    return " ".join(_PERSON.get(word, word) for word in text.split())
