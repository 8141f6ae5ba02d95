"""What a transcript asks for, by pattern: the on-device router's vocabulary.

Patterns are matched on a normalised transcript (lower case, curly quotes
straightened, punctuation dropped, a leading wake phrase and politeness such as
"hey glasses, can you please ..." removed). The device-answerable intents
("read this", "what is this", "scan this", "how much is this") must match the
*whole* remaining utterance: "what is this" is answered from recognition, but
"what is this made of" is a question for the cloud. Privacy commands and
device status match anywhere they are unambiguous; a question about the camera
("is the camera on?") asks for its state and never switches it.
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
    "privacy_status",
    "time",
    "date",
    "device_status",
    "barcode",
    "price",
    "read_text",
    "identify",
    "remember",
    "recall",
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

# A question about the camera or privacy ("is the camera on?", "what is privacy mode")
# asks for the state: it must never switch it.
_PRIVACY_QUESTION = re.compile(
    r"^(?:is|are|am|was|were|what|what's|whats|how|how's|why|does|do|did|when)\b"
    r".*\b(?:camera|privacy)\b"
)
_PRIVACY_OFF = _anywhere(
    r"privacy(?: mode)? off|(?:turn|switch) off privacy(?: mode)?|"
    r"(?:exit|leave|end|stop|disable|cancel) privacy(?: mode)?|"
    r"(?:turn|switch) (?:the )?camera (?:back )?on|(?:turn|switch) (?:back )?on (?:the )?camera|"
    r"camera (?:back )?on|enable (?:the )?camera"
)
_PRIVACY_ON = _anywhere(
    r"privacy mode|privacy on|(?:turn|switch) on privacy|enable privacy|go private|"
    r"(?:turn|switch) (?:the )?camera off|(?:turn|switch) off (?:the )?camera|camera off|"
    r"disable (?:the )?camera"
)
# Only as the whole request: "stop recording my voice memo" is not about the camera.
_STOP_WATCHING = _full(r"stop (?:looking|watching|recording|filming)(?: me)?")
_TIME = _full(
    r"what time is it|what's the time|what is the time|whats the time|(?:tell me )?the time|"
    r"time|current time|have you got the time|do you have the time|what time it is"
)
_DATE = _full(
    r"(?:what's|what is|whats) (?:the date|today's date|todays date)(?: today)?|"
    r"what date is it(?: today)?|(?:today's|todays) date|the date|date|what the date is|"
    r"what day is (?:it|today)(?: today)?|(?:what's|what is|whats) today|what day it is"
)
# The glasses' own state. "status" alone, never "the status of my flight"; "the battery"
# alone, never "the battery life of this phone".
_STATUS = _anywhere(
    r"how much battery|battery left|(?:my|your) battery|charge level|how much charge|"
    r"(?:am i|are you) charging|(?:are|am) (?:you|we|i) (?:online|connected|offline)|"
    r"(?:connection|link|network|device|system|glasses) (?:status|state)|"
    r"(?:which|what) models? (?:are you|do you|are|is it|is this)(?: using| use| running)?|"
    r"your models"
)
_STATUS_ALONE = _full(
    r"status(?: report| update)?|(?:what's|what is|whats) (?:the |your )?status|"
    r"(?:(?:what's|what is|whats|how's|how is|check) )?(?:the )?battery"
    r"(?: level| status| life| percentage)?"
)
_CODE = r"(?:barcode|bar code|qr code|code)"
_BARCODE = _full(
    rf"(?:what's|what is|whats) (?:{_THIS}|the) {_CODE}|"
    rf"scan {_THIS}(?: {_CODE})?|read {_THIS} {_CODE}|"
    rf"(?:scan|read) (?:the |this |that )?{_CODE}|"
    rf"(?:what does|what's in|what is in) (?:the |this |that )?{_CODE}(?: say)?|"
    r"barcode|qr code"
)
# "how much is this": the price tag, read by OCR.
_PRICE = _full(
    rf"how much(?: (?:is|are|does|do|for) {_THIS}(?: one| thing| cost| costs)?)?|"
    rf"(?:what's|what is|whats) the (?:price|cost)(?: of {_THIS}| here| on {_THIS})?|"
    rf"(?:what's|what is|whats) {_THIS} (?:price|cost)|what (?:does|do) {_THIS} cost|"
    r"(?:what does )?the price(?: tag)?(?: say)?|price(?: check)?"
)
_WRITTEN_ON = r"(?:sign|text|label|page|note|menu|board|screen|writing|tag|sticker|poster)"
_READ = _full(
    rf"read {_THIS}(?: out| to me| out loud| aloud)?|read (?:me )?(?:the |this |that )?"
    rf"{_WRITTEN_ON}(?: out| to me| aloud)?|"
    rf"what does {_THIS} say|what does (?:the |this |that )?{_WRITTEN_ON} say|"
    rf"what {_THIS} says|what (?:the |this |that )?{_WRITTEN_ON} says|"
    rf"(?:what's|what is|whats) (?:written )?on (?:the |this |that )?{_WRITTEN_ON}|"
    rf"(?:what's|what is|whats) written(?: here| there| on {_THIS})?|"
    rf"what does {_THIS} read|what do (?:these|those|the) (?:signs|words|labels) say"
)
_IDENTIFY = _full(
    rf"(?:what's|what is|whats) {_THIS}(?: thing| object)?|what {_THIS} (?:is|are)|"
    r"what am i (?:looking at|seeing|holding)|what (?:do|can) you see|"
    r"(?:what's|what is|whats) in front of me|"
    rf"identify {_THIS}|(?:what|which) (?:thing|object) is {_THIS}|"
    r"what are (?:these|those)"
)
# "remember where I parked", "remember that the meeting is at 3", "note that ...".
_REMEMBER = _full(
    r"(?:please )?remember (?!what|when|where did|how|if|whether)\S.*|"
    r"(?:take|make) a note(?: that| of)? \S.*|note that \S.*|don't let me forget \S.*"
)
# "where did I park", "what did I ask you to remember", "where's my car".
_RECALL = _full(
    r"where did i (?:park|leave|put) .*|where did i park|where(?: is|'s|s) my car|"
    r"where i parked|what did i (?:ask you to |tell you to )?(?:remember|note)|"
    r"(?:what|where) (?:was|is) (?:the|my) note|what are my notes|"
    r"do you remember (?:where|what) .*|remind me (?:where|what) .*"
)
_VISUAL = _anywhere(
    r"this|that|these|those|here|there|look|looking|see|seeing|front|sign|signs|read|written|"
    r"say|says|wearing|colou?r|picture|photo|view|label|menu|screen|holding|point|pointing"
)


# First match wins: a question about the camera is privacy_status before any switch;
# "turn off privacy mode" is privacy_off before "privacy mode" is privacy_on.
_RULES: tuple[tuple[Intent, re.Pattern[str]], ...] = (
    ("remember", _REMEMBER),
    ("recall", _RECALL),
    ("privacy_status", _PRIVACY_QUESTION),
    ("privacy_off", _PRIVACY_OFF),
    ("privacy_on", _PRIVACY_ON),
    ("privacy_on", _STOP_WATCHING),
    ("time", _TIME),
    ("date", _DATE),
    ("device_status", _STATUS),
    ("device_status", _STATUS_ALONE),
    ("barcode", _BARCODE),
    ("price", _PRICE),
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
