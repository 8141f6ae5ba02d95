"""Text helpers for hearing: normalization, edit distance, word error rate.

Used by the wake-phrase spotter (fuzzy phrase matching), the tests and the
benchmark (word error rate against the text that was spoken).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = ["edit_distance", "normalize_text", "word_error_rate", "words_of"]

_NOT_WORD = re.compile(r"[^\w' ]+")
_SPACES = re.compile(r"\s+")


def normalize_text(text: str) -> str:
    """Lower case, accents kept, punctuation dropped (apostrophes kept), single spaces."""
    text = unicodedata.normalize("NFKC", text).lower().replace("-", " ")
    text = _NOT_WORD.sub(" ", text)
    return _SPACES.sub(" ", text).strip()


def words_of(text: str) -> list[str]:
    """The normalized words of ``text``."""
    normalized = normalize_text(text)
    return normalized.split(" ") if normalized else []


def edit_distance(a: Sequence[object], b: Sequence[object]) -> int:
    """Levenshtein distance between two sequences (of characters or of words)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, item_a in enumerate(a, start=1):
        current = [i]
        for j, item_b in enumerate(b, start=1):
            current.append(min(
                previous[j] + 1,
                current[j - 1] + 1,
                previous[j - 1] + (item_a != item_b),
            ))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """(substitutions + deletions + insertions) / words in ``reference``, on normalized words."""
    ref = words_of(reference)
    hyp = words_of(hypothesis)
    if not ref:
        return 0.0 if not hyp else 1.0
    return edit_distance(ref, hyp) / len(ref)
