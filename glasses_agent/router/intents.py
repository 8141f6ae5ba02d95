"""What a transcript asks for, by pattern: the on-device router's vocabulary.

Patterns are matched on a normalised transcript (lower case, curly quotes
straightened, punctuation dropped, a leading wake phrase and politeness such as
"hey glasses, can you please ..." removed). The device-answerable intents
("read this", "what is this", "scan this") must match the *whole* remaining
utterance: "what is this" is answered from recognition, but "what is this made
of" is a question for the cloud. Status, privacy, time and date match anywhere
they are unambiguous.
"""

from __future__ import annotations

import re
from typing import Literal

__all__ = [
    "Intent",
    "classify",
    "is_visual",
    "normalize",
]

Intent = Literal[
    "privacy_on",
    "privacy_off",
    "time",
    "date",
    "device_status",
    "barcode",
    "read_text",
    "identify",
    "other",
]

_LEADING = re.compile(
    r"^(?:(?:hey|ok|okay|hi) glasses\s*|hey\s+|ok\s+|okay\s+|so\s+|um+\s+|uh+\s+|please\s+|"
    r"(?:can|could|would|will) you(?: please)?\s+|tell me\s+(?=what|whats|which)|"
    r"i want to know\s+|do you know\s+)+"
)
_TRAILING = re.compile(r"(?:\s+(?:please|for me|now|right now|again))+$")


def normalize(text: str) -> str:
    """Lower case, straight apostrophes kept, other punctuation gone, fillers stripped."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'")
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    text = re.sub(r"'(?![a-z])|(?<![a-z])'", " ", text)  # quotes, not apostrophes
    text = " ".join(text.split())
    text = _LEADING.sub("", text)
    text = _TRAILING.sub("", text)
    return text.strip()


def _full(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"^(?:{pattern})$")


def _anywhere(pattern: str) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{pattern})\b")


_THIS = r"(?:this|that|it|these|those)"

_PRIVACY_OFF = _anywhere(
    r"privacy(?: mode)? off|(?:turn|switch) off privacy(?: mode)?|"
    r"(?:exit|leave|end|stop|disable|cancel) privacy(?: mode)?|"
    r"(?:turn|switch) (?:the )?camera (?:back )?on|(?:turn|switch) (?:back )?on (?:the )?camera|"
    r"camera (?:back )?on|enable (?:the )?camera"
)
_PRIVACY_ON = _anywhere(
    r"privacy mode|privacy on|(?:turn|switch) on privacy|enable privacy|go private|"
    r"(?:turn|switch) (?:the )?camera off|(?:turn|switch) off (?:the )?camera|camera off|"
    r"disable (?:the )?camera|stop (?:looking|watching|recording|filming)"
)
_TIME = _full(
    r"what time is it|what's the time|what is the time|whats the time|(?:tell me )?the time|"
    r"time|current time|have you got the time|do you have the time"
)
_DATE = _full(
    r"(?:what's|what is|whats) (?:the date|today's date|todays date)(?: today)?|"
    r"what date is it(?: today)?|(?:today's|todays) date|the date|date|"
    r"what day is (?:it|today)(?: today)?|(?:what's|what is|whats) today"
)
_STATUS = _anywhere(
    r"battery (?:level|status|left|life|percentage)|how much battery|"
    r"(?:what's|what is|whats|how's|how is) (?:my |the |your )?battery|charge level|"
    r"how much charge|am i charging|(?:are|am) (?:you|we|i) (?:online|connected|offline)|"
    r"(?:connection|link|network|device|system) (?:status|state)|status report|status|"
    r"(?:which|what) models? (?:are you|do you|are|is it|is this)(?: using| use| running)?|"
    r"your models"
)
_CODE = r"(?:barcode|bar code|qr code|code)"
_BARCODE = _full(
    rf"(?:what's|what is|whats) {_THIS} {_CODE}|"
    rf"scan {_THIS}(?: {_CODE})?|read {_THIS} {_CODE}|"
    rf"(?:scan|read) (?:the |this |that )?{_CODE}|"
    rf"(?:what does|what's in|what is in) (?:the |this |that )?{_CODE}(?: say)?|"
    r"barcode|qr code"
)
_READ = _full(
    rf"read {_THIS}(?: out| to me| out loud| aloud)?|read (?:me )?(?:the |this |that )?"
    r"(?:sign|text|label|page|note|menu|board|screen|writing)(?: out| to me| aloud)?|"
    rf"what does {_THIS} say|what does (?:the |this |that )?"
    r"(?:sign|text|label|page|note|menu|board|screen|writing) say|"
    r"what's written(?: here| there| on (?:it|this|that))?|"
    r"what is written(?: here| there| on (?:it|this|that))?|"
    rf"what does {_THIS} read|what do (?:these|those|the) (?:signs|words|labels) say"
)
_IDENTIFY = _full(
    rf"(?:what's|what is|whats) {_THIS}(?: thing| object)?|"
    r"what am i (?:looking at|seeing|holding)|what (?:do|can) you see|"
    r"(?:what's|what is|whats) in front of me|"
    rf"identify {_THIS}|(?:what|which) (?:thing|object) is {_THIS}|"
    r"what are (?:these|those)"
)
_VISUAL = _anywhere(
    r"this|that|these|those|here|there|look|looking|see|seeing|front|sign|signs|read|written|"
    r"say|says|wearing|colou?r|picture|photo|view|label|menu|screen|holding|point|pointing"
)


# First match wins: "turn off privacy mode" is privacy_off before "privacy mode" is privacy_on.
_RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("privacy_off", _PRIVACY_OFF),
    ("privacy_on", _PRIVACY_ON),
    ("time", _TIME),
    ("date", _DATE),
    ("device_status", _STATUS),
    ("barcode", _BARCODE),
    ("read_text", _READ),
    ("identify", _IDENTIFY),
)


def classify(text: str) -> Intent:
    """The intent of one transcript (``other``: for the cloud)."""
    q = normalize(text)
    if not q:
        return "other"
    for intent, pattern in _RULES:
        if pattern.search(q):
            return intent
    return "other"


def is_visual(text: str) -> bool:
    """Does the question refer to what is in view ("this", "look", "sign", ...)?"""
    return bool(_VISUAL.search(normalize(text)))
