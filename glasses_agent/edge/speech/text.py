"""Text helpers for hearing: normalization, edit distance, word error rate.

Used by the wake-phrase spotter (fuzzy phrase matching), the tests and the
benchmark (word error rate against the text that was spoken).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = ["edit_distance", "normalize_text", "unlooped", "word_error_rate", "words_of"]

# Whisper's decoder, caught in a loop, writes a block of words again and again (unlooped).
LOOP_SENTENCE_WORDS = 4
LOOP_REPEATS = 3

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


def unlooped(words: Sequence[str]) -> list[int]:
    """Which of ``words`` (as written, one per item) to keep when a decoder looped.

    Whisper's decoder, caught in a loop, writes a block of words again and again: a
    block of ``LOOP_SENTENCE_WORDS`` or more words twice in a row ("Hey glasses, what is
    this? Hey glasses, what is this?"), or a shorter one ``LOOP_REPEATS`` or more times
    ("glasses, glasses, glasses, ..."), is kept once. Words compare normalized
    (``normalize_text``). A short repeat a person makes ("no, no", "bye bye") is kept.
    """
    norm = [normalize_text(w) for w in words]
    n = len(norm)
    keep: list[int] = []
    i = 0
    while i < n:
        step = 0
        for size in range(1, (n - i) // 2 + 1):
            block = norm[i:i + size]
            repeats = 1
            while norm[i + repeats * size:i + (repeats + 1) * size] == block:
                repeats += 1
            if repeats >= (2 if size >= LOOP_SENTENCE_WORDS else LOOP_REPEATS):
                keep.extend(range(i, i + size))
                step = repeats * size
                break
        if step:
            i += step
        else:
            keep.append(i)
            i += 1
    return keep
