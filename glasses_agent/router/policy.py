"""The on-device router: answer here what the glasses can, escalate the rest.

Pure policy. ``route`` takes the query, the wall-clock time (``now``), the
device's state and the candidate keyframes as arguments, reads no clock, does
no I/O, and returns a ``Decision``; every decision is logged (logger
``glasses_agent.router``) with its rule and reason, which the decision also
carries. ``offline_fallback`` is the best on-device answer for a query the
cloud could not answer (timeout, offline), said as such.

The rules, first match wins (docs/router.md has the table):

1. a question about the camera ("is the camera on?"): local, its state;
   privacy on/off ("turn off the camera", "privacy mode", "camera on"): local,
   with an ``action`` for the runtime to carry out;
2. time and date: local, from ``now``;
3. device status (battery, link, models): local, from ``DeviceStatus``;
4. with privacy on, anything that needs the camera: local, "the camera is off";
5. "read this" / "what does it say": local from OCR text (a barcode if no text);
6. "what's this barcode" / "scan this": local from the decoded barcode;
7. "how much is this": local from the OCR lines that show a price; otherwise
   escalated with the keyframe;
8. "what is this" / "what am I looking at": local from recognition labels when
   the best scores at least ``confident_label_score``; otherwise escalated
   with the keyframe (``escalate_unsure``), or "not sure" when offline;
9. the query's ``contemplate`` flag or a ``contemplate_keywords`` phrase:
   escalate in contemplating mode;
10. everything else: escalate with the facts, and a keyframe when the question
    refers to what is in view.

When the link is down (``DeviceStatus.link`` is ``LinkState.OFFLINE``) a query that would
be escalated gets ``offline_fallback`` straight away instead of waiting for a
timeout.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from glasses_agent.config import RouterConfig
from glasses_agent.frames import Barcode, Label, LinkState, Perception, Query
from glasses_agent.protocol import Facts, Location, SeenBarcode, SeenLabel
from glasses_agent.router.intents import Intent, classify, is_visual, normalize
from glasses_agent.spoken import (
    article as _article,
)
from glasses_agent.spoken import (
    barcode_type_name,
    spoken_date,
    spoken_time,
)

__all__ = [
    "Decision",
    "DeviceStatus",
    "Keyframe",
    "Note",
    "facts_from_perception",
    "offline_fallback",
    "pick_keyframe",
    "route",
]

logger = logging.getLogger("glasses_agent.router")

Kind = Literal["local", "escalate", "contemplate"]
Action = Literal["privacy_on", "privacy_off", "remember"]
_DEFAULT_CONFIG = RouterConfig()
_MAX_READ_CHARS = 280
_MAX_LABELS = 5
_MAX_PRICES = 3
_CAMERA_INTENTS = frozenset({"read_text", "barcode", "identify", "price"})
# A price on a tag or a menu line: with a currency ("$3.99", "2,50 €", "12 EUR")...
_PRICE = re.compile(
    r"[$€£¥₹]\s?\d[\d,.]*|\d[\d,.]*\s?(?:[$€£¥₹]|(?:usd|eur|gbp|chf|dollars?|euros?|pounds?)\b)",
    re.IGNORECASE,
)
# ... or, when no line has a currency, a bare amount with two decimals ("3.99", "2,50").
_BARE_PRICE = re.compile(r"(?<![\d.,])\d{1,5}[.,]\d{2}(?![\d.,%])")


@dataclass(frozen=True, slots=True, kw_only=True)
class Keyframe:
    """A candidate image for the cloud: JPEG bytes (bystander faces already blurred)."""

    timestamp_s: float
    jpeg: bytes = field(repr=False)
    sharpness: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """Something the wearer asked the glasses to remember, kept on the device.

    ``facts``: what the camera saw then (text read, labels), so that "where did I
    park?" can answer "the sign read Level 3 B"; ``location`` when the wearer allows it.
    """

    text: str
    timestamp: datetime
    facts: Facts = field(default_factory=Facts)
    location: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeviceStatus:
    """What the glasses know about themselves, passed in by the runtime."""

    battery_percent: float | None = None
    charging: bool = False
    # The cloud link as the cloud client sees it.
    link: LinkState = LinkState.CONNECTED
    privacy: bool = False
    # Role -> model name, e.g. {"speech": "Whisper tiny.en", "vision": "EfficientNet-Lite0 int8"}.
    models: Mapping[str, str] = field(default_factory=dict)
    # What the wearer asked to remember, oldest first (kept by the runtime).
    notes: Sequence[Note] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    """What to do with one query.

    ``kind``: ``local`` (speak ``reply``), ``escalate`` or ``contemplate`` (send
    ``facts`` and ``keyframe`` to the cloud). ``rule`` names the rule that
    decided and ``reason`` says why, for the log. ``offline``: a local answer
    given because the cloud could not be reached. ``action``: a state change
    the runtime carries out (privacy on/off, keep ``note``).
    """

    query_id: str
    kind: Kind
    rule: str
    reason: str
    reply: str = ""
    facts: Facts = field(default_factory=Facts)
    keyframe: Keyframe | None = None
    action: Action | None = None
    offline: bool = False
    # With action "remember": the note for the runtime to keep.
    note: Note | None = None

    @property
    def is_local(self) -> bool:
        return self.kind == "local"


# --- facts ---------------------------------------------------------------------------------


def _text_lines(perception: Perception | None, config: RouterConfig) -> list[str]:
    if perception is None:
        return []
    # Perception already orders lines for reading (rows found on the levelled text boxes).
    return [" ".join(t.text.split()) for t in perception.text
            if t.score >= config.min_text_score and t.text.strip()]


def _labels(perception: Perception | None) -> list[Label]:
    """What the wearer looks at: the centre crop's labels when there are any."""
    if perception is None:
        return []
    labels = perception.center_labels or perception.labels
    return sorted(labels, key=lambda label: label.score, reverse=True)[:_MAX_LABELS]


def facts_from_perception(
    perception: Perception | None,
    *,
    now: datetime,
    config: RouterConfig = _DEFAULT_CONFIG,
    intent: Intent | str = "",
    location: tuple[float, float] | None = None,
) -> Facts:
    """The facts sent with an escalated query (``now`` with its time zone: the wearer's
    local time); ``location`` only when the wearer allows it."""
    where = None if location is None else Location(lat=round(location[0], 5),
                                                   lon=round(location[1], 5))
    facts = Facts(local_time=now.isoformat(timespec="seconds"), intent=intent, location=where)
    if perception is None:
        return facts
    return dataclasses.replace(
        facts,
        text=tuple(_text_lines(perception, config)),
        labels=tuple(SeenLabel(name=lb.name, score=round(lb.score, 2))
                     for lb in _labels(perception)),
        barcodes=tuple(SeenBarcode(type=barcode_type_name(b.type), data=b.data)
                       for b in perception.barcodes),
        people_in_view=len(perception.faces),
    )


# --- keyframes -----------------------------------------------------------------------------


def pick_keyframe(
    candidates: Sequence[Keyframe],
    *,
    query_s: float,
    perception_s: float | None,
    max_age_s: float,
) -> Keyframe | None:
    """The candidate to send: none older than ``max_age_s`` before the query; among the
    rest the one nearest the perception the facts come from (so image and facts agree),
    then the sharpest, then the newest."""
    recent = [k for k in candidates if query_s - k.timestamp_s <= max_age_s]
    if not recent:
        return None
    anchor = query_s if perception_s is None else perception_s

    def rank(k: Keyframe) -> tuple[float, float, float]:
        return (-abs(k.timestamp_s - anchor), k.sharpness, k.timestamp_s)

    return max(recent, key=rank)


# --- spoken replies ------------------------------------------------------------------------


def _spoken_barcode(barcode: Barcode) -> str:
    kind = barcode_type_name(barcode.type)
    data = barcode.data.strip()
    if kind == "QR code":
        parts = urlsplit(data)
        if parts.scheme in ("http", "https") and parts.netloc:
            shown = (parts.netloc + parts.path).rstrip("/")
            return f"It's a QR code linking to {shown}."
        return f"It's a QR code that says: {data[:_MAX_READ_CHARS]}."
    return f"It's {_article(kind)} {kind} barcode: {data}."


def _read_out(lines: Sequence[str]) -> str:
    said = ". ".join(line.rstrip(".,;: ") for line in lines)
    if len(said) > _MAX_READ_CHARS:
        said = said[:_MAX_READ_CHARS].rsplit(" ", 1)[0] + ", and more"
    return f"{said}."


def _spoken_text(lines: Sequence[str]) -> str:
    return f"It says: {_read_out(lines)}"


def _price_lines(lines: Sequence[str]) -> list[str]:
    """The OCR lines that show a price (with a currency if any line has one)."""
    marked = [line for line in lines if _PRICE.search(line)]
    return marked or [line for line in lines if _BARE_PRICE.search(line)]


def _spoken_prices(lines: Sequence[str]) -> str:
    if len(lines) == 1:
        return f"The price says: {_read_out(lines)}"
    more = ", and more" if len(lines) > _MAX_PRICES else ""
    shown = _read_out(lines[:_MAX_PRICES]).rstrip(".")
    return f"I see {len(lines)} prices: {shown}{more}."


def _spoken_privacy(device: DeviceStatus) -> str:
    if device.privacy:
        return "Privacy mode is on: the camera is off. Say 'camera on' to turn it back on."
    return "The camera is on; privacy mode is off. Say 'privacy on' to turn the camera off."


def _spoken_status(device: DeviceStatus) -> str:
    parts = []
    if device.battery_percent is not None:
        charging = ", charging" if device.charging else ""
        parts.append(f"Battery {round(device.battery_percent)} percent{charging}.")
    parts.append({
        LinkState.CONNECTED: "Connected to the cloud.",
        LinkState.RECONNECTING: "Connecting to the cloud.",
        LinkState.OFFLINE: "Offline: answering on the glasses only.",
    }[device.link])
    if device.privacy:
        parts.append("Privacy mode is on.")
    if device.models:
        parts.append("Models: " + ", ".join(f"{role} {name}" for role, name in
                                            device.models.items()) + ".")
    return " ".join(parts)


# --- the rules -----------------------------------------------------------------------------


def _decision(query: Query, kind: Kind, rule: str, reason: str, **rest: Any) -> Decision:
    decision = Decision(query_id=query.query_id, kind=kind, rule=rule, reason=reason, **rest)
    logger.info(
        "route %s: %s by %s (%s)", query.query_id, kind, rule, reason,
        extra={
            "query_id": query.query_id,
            "decision_kind": kind,
            "rule": rule,
            "reason": reason,
            "offline": decision.offline,
            "keyframe": decision.keyframe is not None,
        },
    )
    return decision


def _device_answer(
    query: Query, intent: Intent, device: DeviceStatus, config: RouterConfig
) -> tuple[str, str, str] | None:
    """(rule, reply, reason) for what the camera's facts answer on the device, else None."""
    perception = None if device.privacy else query.perception
    text = _text_lines(perception, config)
    barcodes = perception.barcodes if perception is not None else ()
    labels = _labels(perception)
    if intent == "read_text":
        if text:
            return "read_text", _spoken_text(text), f"OCR read {len(text)} line(s)"
        if barcodes:
            return "barcode", _spoken_barcode(barcodes[0]), "no text, but a barcode"
        return None
    if intent == "price":
        prices = _price_lines(text)
        if prices:
            return "price", _spoken_prices(prices), f"OCR read {len(prices)} price line(s)"
        return None
    if intent == "barcode":
        if barcodes:
            more = f" I see {len(barcodes) - 1} more." if len(barcodes) > 1 else ""
            return ("barcode", _spoken_barcode(barcodes[0]) + more,
                    f"decoded {len(barcodes)} barcode(s)")
        return ("barcode", "I don't see a barcode. Hold it closer and steady.",
                "asked for a barcode, none decoded")
    if intent == "identify" and labels and labels[0].score >= config.confident_label_score:
        best = labels[0]
        return ("identify", f"It looks like {_article(best.name)} {best.name}.",
                f"label {best.name!r} at {best.score:.2f} >= {config.confident_label_score:g}")
    return None


def route(
    query: Query,
    *,
    now: datetime,
    device: DeviceStatus,
    config: RouterConfig = _DEFAULT_CONFIG,
    keyframes: Sequence[Keyframe] = (),
) -> Decision:
    """Decide one query. ``now``: the wall-clock time (with its time zone) for time and date;
    ``keyframes``: candidates (default: the query's own ``keyframes_jpeg``, taken at the
    query's time)."""
    intent = classify(query.text)
    if intent == "remember":
        note = _note_from(query, now=now, device=device, config=config)
        return _decision(query, "local", "remember", "notes are kept on the device",
                         reply=f"Okay, I'll remember: {_second_person(note.text)}.",
                         action="remember", note=note)
    if intent == "recall":
        reply, why = _recall(query.text, device.notes, now)
        return _decision(query, "local", "recall", why, reply=reply)
    if intent == "privacy_status":
        return _decision(query, "local", "privacy_status", "asked about the camera's state",
                         reply=_spoken_privacy(device))
    if intent == "privacy_on":
        return _decision(query, "local", "privacy_on", "asked to turn the camera off",
                         reply="Privacy mode on. The camera is off.", action="privacy_on")
    if intent == "privacy_off":
        return _decision(query, "local", "privacy_off", "asked to turn the camera on",
                         reply="Camera on. Privacy mode off.", action="privacy_off")
    if intent == "time":
        return _decision(query, "local", "time", "time is known on the device",
                         reply=f"It's {spoken_time(now)}.")
    if intent == "date":
        return _decision(query, "local", "date", "date is known on the device",
                         reply=f"It's {spoken_date(now)}.")
    if intent == "device_status":
        return _decision(query, "local", "device_status", "device state is known on the device",
                         reply=_spoken_status(device))
    if device.privacy and intent in _CAMERA_INTENTS:
        return _decision(query, "local", "privacy", "privacy mode: the camera is off",
                         reply="The camera is off in privacy mode. Say 'camera on' to use it.")
    answer = _device_answer(query, intent, device, config)
    if answer is not None:
        rule, reply, reason = answer
        return _decision(query, "local", rule, reason, reply=reply)
    if intent == "identify" and not config.escalate_unsure:
        return _decision(query, "local", "identify", "labels below the confidence threshold",
                         reply=_unsure(_labels(query.perception)))
    if device.link is LinkState.OFFLINE:
        return offline_fallback(query, now=now, device=device, config=config, cause="offline")
    contemplate, why = _wants_contemplating(query, config)
    facts = facts_from_perception(None if device.privacy else query.perception, now=now,
                                  config=config, intent=intent)
    keyframe, image_why = _keyframe_for(query, intent, device, config, keyframes)
    kind: Kind = "contemplate" if contemplate else "escalate"
    reason = f"{why}; {image_why}" if contemplate else (
        f"{_escalation_reason(intent)}; {image_why}"
    )
    return _decision(query, kind, "contemplate" if contemplate else "escalate", reason,
                     facts=facts, keyframe=keyframe)


_REMEMBER_LEAD = re.compile(
    r"^(?:please )?(?:remember|(?:take|make) a note|note|don't let me forget)(?: that| of)?\s+"
)
_PERSON = {"i": "you", "my": "your", "me": "you", "i'm": "you're", "mine": "yours",
           "myself": "yourself", "am": "are", "i've": "you've", "i'll": "you'll"}
_STOPWORDS = frozenset(
    "the a an i my me you your is was did do to of at in on where what that this it".split()
)


def _second_person(text: str) -> str:
    return " ".join(_PERSON.get(word, word) for word in text.split())


def _note_from(query: Query, *, now: datetime, device: DeviceStatus,
               config: RouterConfig) -> Note:
    text = _REMEMBER_LEAD.sub("", normalize(query.text)) or normalize(query.text)
    seen = Facts() if device.privacy else facts_from_perception(query.perception, now=now,
                                                                  config=config)
    # What the camera read and recognised; not who was there, nor the time (kept apart).
    seen = dataclasses.replace(seen, local_time="", people_in_view=0)
    return Note(text=text, timestamp=now, facts=seen)


def _ago(then: datetime, now: datetime) -> str:
    minutes = max(0, int((now - then).total_seconds() // 60))
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    hours = minutes // 60
    return f"{hours} hours ago" if hours < 48 else f"on {spoken_date(then)}"


def _recall(question: str, notes: Sequence[Note], now: datetime) -> tuple[str, str]:
    """The note that best matches ``question`` (shared words; the newest on a tie)."""
    if not notes:
        return "You haven't asked me to remember anything yet.", "no notes kept"
    wanted = set(normalize(question).split()) - _STOPWORDS
    # "park" finds "parked": compare word stems of at least four letters.
    def overlap(note: Note) -> int:
        words = set(note.text.split()) - _STOPWORDS
        return sum(1 for w in wanted for n in words if w[:4] == n[:4])

    best = max(enumerate(notes), key=lambda item: (overlap(item[1]), item[0]))[1]
    parts = [f"You asked me to remember: {_second_person(best.text)}, {_ago(best.timestamp, now)}."]
    lines = list(best.facts.text)
    if lines:
        parts.append(f"The text in view then was: {_read_out(lines)}")
    if best.location is not None:
        parts.append(f"Location: {best.location[0]:.5f}, {best.location[1]:.5f}.")
    return " ".join(parts), f"recalled a note ({overlap(best)} shared words)"


def _wants_contemplating(query: Query, config: RouterConfig) -> tuple[bool, str]:
    if query.contemplate:
        return True, "the query asks for contemplating mode"
    text = normalize(query.text)
    for keyword in config.contemplate_keywords:
        if keyword and f" {keyword.lower()} " in f" {text} ":
            return True, f"contemplate keyword {keyword!r}"
    return False, ""


def _escalation_reason(intent: Intent) -> str:
    return {
        "read_text": "asked to read, but no text was read on the device",
        "price": "asked for a price, but no price was read on the device",
        "identify": "recognition is not confident",
    }.get(intent, "not answerable on the device")


def _keyframe_for(
    query: Query,
    intent: Intent,
    device: DeviceStatus,
    config: RouterConfig,
    keyframes: Sequence[Keyframe],
) -> tuple[Keyframe | None, str]:
    if device.privacy:
        return None, "no keyframe (privacy mode)"
    if intent not in _CAMERA_INTENTS and not is_visual(query.text):
        return None, "no keyframe (the question is not about what is in view)"
    candidates = list(keyframes) or [
        Keyframe(timestamp_s=query.timestamp_s, jpeg=jpeg) for jpeg in query.keyframes_jpeg
    ]
    if not candidates:
        return None, "no keyframe (none offered)"
    perception_s = query.perception.timestamp_s if query.perception is not None else None
    chosen = pick_keyframe(candidates, query_s=query.timestamp_s, perception_s=perception_s,
                           max_age_s=config.keyframe_max_age_s)
    if chosen is None:
        return None, f"no keyframe (none within {config.keyframe_max_age_s:g} s)"
    return chosen, f"keyframe from t={chosen.timestamp_s:.2f} s"


def _unsure(labels: Sequence[Label]) -> str:
    if labels:
        return f"I'm not sure. It might be {_article(labels[0].name)} {labels[0].name}."
    return "I'm not sure what this is."


def offline_fallback(
    query: Query,
    *,
    now: datetime,
    device: DeviceStatus,
    config: RouterConfig = _DEFAULT_CONFIG,
    cause: Literal["offline", "timeout", "error"] = "timeout",
) -> Decision:
    """The best on-device answer for a query the cloud did not answer, said as offline."""
    intent = classify(query.text)
    answer = _device_answer(query, intent, device, config)
    perception = None if device.privacy else query.perception
    if answer is not None:
        _, reply, what = answer
        if reply.startswith("It"):
            reply = f"I'm offline, but i{reply[1:]}"
        else:
            reply = f"I'm offline. {reply}"
    else:
        text = _text_lines(perception, config)
        labels = _labels(perception)
        barcodes = perception.barcodes if perception is not None else ()
        if text:
            reply, what = f"I'm offline, but I can read: {_read_out(text)}", "text"
        elif barcodes:
            reply = f"I'm offline, but I see a barcode. {_spoken_barcode(barcodes[0])}"
            what = "barcode"
        elif labels and labels[0].score >= config.confident_label_score:
            best = labels[0].name
            reply, what = f"I'm offline, but I can see {_article(best)} {best}.", "label"
        elif labels:
            best = labels[0].name
            reply = f"I'm offline, and not sure what I see. It might be {_article(best)} {best}."
            what = "unsure label"
        else:
            reply = "I'm offline and can't answer that on the glasses."
            what = "nothing on the device"
    reason = f"cloud {cause}: best on-device answer ({what})"
    return _decision(query, "local", "offline", reason, reply=reply, offline=True)
