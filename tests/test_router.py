"""The on-device router: pure policy, so every rule is checked with plain values."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from glasses_agent.config import RouterConfig
from glasses_agent.edge.perception.keyframe import pick_keyframe
from glasses_agent.edge.router import (
    Decision,
    DeviceStatus,
    Keyframe,
    classify,
    facts_from_perception,
    offline_fallback,
    route,
)
from glasses_agent.frames import Barcode, Label, LinkState, Perception, Query, TextLine
from glasses_agent.protocol import Facts, SeenBarcode, SeenLabel

NOW = datetime(2026, 11, 3, 14, 5, tzinfo=timezone(timedelta(hours=1)))
ONLINE = DeviceStatus(battery_percent=82, link=LinkState.CONNECTED)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16


def query(text: str, perception: Perception | None = None, **kw: object) -> Query:
    return Query(query_id="q1", text=text, timestamp_s=100.0, perception=perception, **kw)  # type: ignore[arg-type]


def seen(
    *,
    text: tuple[tuple[str, float, tuple[int, int, int, int]], ...] = (),
    labels: tuple[tuple[str, float], ...] = (),
    center: tuple[tuple[str, float], ...] = (),
    barcodes: tuple[tuple[str, str], ...] = (),
    faces: int = 0,
) -> Perception:
    return Perception(
        timestamp_s=99.5,
        text=tuple(TextLine(text=t, score=s, box=b) for t, s, b in text),
        labels=tuple(Label(name=n, score=s) for n, s in labels),
        center_labels=tuple(Label(name=n, score=s) for n, s in center),
        barcodes=tuple(Barcode(type=k, data=d) for k, d in barcodes),
        faces=tuple((0, 0, 10, 10) for _ in range(faces)),
    )


# Perception hands the lines over in reading order (rows found on the levelled boxes).
SIGN = seen(text=(("EXIT 12", 0.97, (40, 20, 200, 70)), ("Main Street", 0.93, (40, 90, 300, 130))))


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Hey glasses, what time is it?", "time"),
        ("What time is it in Tokyo?", "other"),
        ("what's the date today", "date"),
        ("What day is it?", "date"),
        ("What\u2019s this barcode?", "barcode"),
        ("scan this", "barcode"),
        ("Read this, please.", "read_text"),
        ("What does the sign say?", "read_text"),
        ("can you read me the menu", "read_text"),
        ("what does this sign mean", "other"),
        ("What is this?", "identify"),
        ("what am I looking at", "identify"),
        ("What is this made of?", "other"),
        ("Turn off the camera.", "privacy_on"),
        ("privacy mode", "privacy_on"),
        ("Turn off privacy mode", "privacy_off"),
        ("camera on", "privacy_off"),
        ("How much battery do I have left?", "device_status"),
        ("Are you online?", "device_status"),
        ("which models are you using", "device_status"),
        ("How long does an AA battery last?", "other"),
        ("", "other"),
        # Phrasings a wearer uses; each once misrouted by a too broad or too narrow pattern.
        ("Is the camera on?", "privacy_status"),  # a question: never switches the camera
        ("is privacy mode on", "privacy_status"),
        ("what is privacy mode", "privacy_status"),
        ("stop recording", "privacy_on"),
        ("stop recording my voice memo", "other"),
        ("What's the status of my flight?", "other"),
        ("what is the battery life of this phone", "other"),
        ("status", "device_status"),
        ("what's my battery", "device_status"),
        ("do you know what time it is", "time"),
        ("How much is this?", "price"),
        ("how much does that cost", "price"),
        ("what's the price", "price"),
        ("how much does this weigh", "other"),
        ("what's written on the sign", "read_text"),
        ("can you tell me what this says", "read_text"),
        ("can you tell me what this is", "identify"),
        ("what's the barcode", "barcode"),
        ("is it going to rain", "other"),
        ("Stop.", "stop"),
        ("never mind", "stop"),
        ("thanks, that's all", "stop"),
        ("stop the music in the next room", "other"),
    ],
)
def test_intents(text: str, intent: str) -> None:
    assert classify(text) == intent


def test_time_and_date_come_from_the_now_argument() -> None:
    d = route(query("what time is it"), now=NOW, device=ONLINE)
    assert (d.kind, d.rule, d.reply) == ("local", "time", "It's 2:05 PM.")
    later = route(query("what time is it"), now=NOW + timedelta(hours=10), device=ONLINE)
    assert later.reply == "It's 12:05 AM."
    d = route(query("what's the date"), now=NOW, device=ONLINE)
    assert d.reply == "It's Tuesday, 3 November 2026."


def test_read_this_reads_ocr_lines_in_perceptions_order() -> None:
    d = route(query("what does it say?", SIGN), now=NOW, device=ONLINE)
    assert d.kind == "local" and d.rule == "read_text"
    assert d.reply == "It says: EXIT 12. Main Street."
    assert "2 line" in d.reason


def test_low_confidence_ocr_is_not_read_and_read_escalates_with_the_keyframe() -> None:
    blurry = seen(text=(("M4in 5tr", 0.2, (0, 0, 10, 10)),))
    q = query("read this", blurry, keyframes_jpeg=(JPEG,))
    d = route(q, now=NOW, device=ONLINE)
    assert d.kind == "escalate"
    assert "no text" in d.reason
    assert d.keyframe is not None and d.keyframe.jpeg == JPEG
    assert d.facts.text == ()


def test_barcodes() -> None:
    ean = seen(barcodes=(("EAN13", "4006381333931"),))
    d = route(query("what's this barcode", ean), now=NOW, device=ONLINE)
    assert (d.kind, d.rule) == ("local", "barcode")
    assert d.reply == "It's an EAN-13 barcode: 4006381333931."
    qr = seen(barcodes=(("QRCODE", "https://example.com/menu/"),))
    assert route(query("scan this", qr), now=NOW, device=ONLINE).reply == (
        "It's a QR code linking to example.com/menu."
    )
    none = route(query("scan this", seen()), now=NOW, device=ONLINE)
    assert none.kind == "local" and "don't see a barcode" in none.reply
    # "read this" with a barcode and no text reads the barcode.
    assert "4006381333931" in route(query("read this", ean), now=NOW, device=ONLINE).reply


def test_what_is_this_answers_when_confident_and_escalates_when_not() -> None:
    confident = seen(labels=(("tabby", 0.3),), center=(("espresso", 0.91), ("cup", 0.05)))
    d = route(query("What is this?", confident), now=NOW, device=ONLINE)
    assert (d.kind, d.rule, d.reply) == ("local", "identify", "It looks like an espresso.")
    unsure = seen(center=(("tripod", 0.31),))
    q = query("what am I looking at", unsure, keyframes_jpeg=(JPEG,))
    d = route(q, now=NOW, device=ONLINE)
    assert d.kind == "escalate" and "not confident" in d.reason
    assert d.keyframe is not None
    assert d.facts.center_labels == (SeenLabel(name="tripod", score=0.31),)
    local_only = RouterConfig(escalate_unsure=False)
    d = route(query("what is this", unsure), now=NOW, device=ONLINE, config=local_only)
    assert d.kind == "local" and d.reply == "I'm not sure. It might be a tripod."
    nothing = route(query("what is this", seen()), now=NOW, device=ONLINE, config=local_only)
    assert nothing.reply == "I'm not sure what this is."


def test_device_status_uses_what_is_passed_in() -> None:
    device = DeviceStatus(battery_percent=41.6, charging=True, link=LinkState.OFFLINE,
                          models={"speech": "Whisper tiny.en", "cloud": "SmolLM2-135M"})
    d = route(query("battery status"), now=NOW, device=device)
    assert d.kind == "local" and d.rule == "device_status"
    assert "Battery 42 percent, charging." in d.reply
    assert "Offline" in d.reply and "speech Whisper tiny.en" in d.reply


def test_how_much_is_this_reads_the_price_from_ocr() -> None:
    tag = seen(text=(("Organic Apples", 0.9, (0, 0, 200, 30)),
                     ("$3.99 / lb", 0.9, (0, 40, 200, 70))))
    d = route(query("how much is this?", tag), now=NOW, device=ONLINE)
    assert (d.kind, d.rule, d.reply) == ("local", "price", "The price says: $3.99 / lb.")
    menu = seen(text=tuple((f"{dish} {price}", 0.9, (0, 40 * i, 200, 40 * i + 30))
                           for i, (dish, price) in enumerate(
                               [("Coffee", "2.50"), ("Tea", "2.00"), ("Cake", "3,50"),
                                ("Bun", "1.20")])))
    d = route(query("what's the price", menu), now=NOW, device=ONLINE)
    assert d.reply == "I see 4 prices: Coffee 2.50. Tea 2.00. Cake 3,50, and more."
    # No price in view (a date is not a price): the cloud gets the text and the keyframe.
    label = seen(text=(("Best before 12.05.2026", 0.9, (0, 0, 200, 30)),))
    d = route(query("how much is this", label, keyframes_jpeg=(JPEG,)), now=NOW, device=ONLINE)
    assert d.kind == "escalate" and "no price" in d.reason and d.keyframe is not None
    assert d.facts.text == ("Best before 12.05.2026",)
    offline = offline_fallback(query("how much is this", label), now=NOW, device=ONLINE)
    assert offline.reply == "I'm offline, but I can read: Best before 12.05.2026."
    private = route(query("how much is this", tag), now=NOW, device=DeviceStatus(privacy=True))
    assert "camera is off" in private.reply and "3.99" not in private.reply


def test_a_question_about_the_camera_answers_its_state_and_switches_nothing() -> None:
    d = route(query("is the camera on?"), now=NOW, device=ONLINE)
    assert (d.kind, d.rule, d.action) == ("local", "privacy_status", None)
    assert d.reply.startswith("The camera is on")
    d = route(query("is the camera on?"), now=NOW, device=DeviceStatus(privacy=True))
    assert d.action is None and d.reply.startswith("Privacy mode is on: the camera is off")


def test_privacy_switch_and_privacy_mode() -> None:
    on = route(query("turn off the camera"), now=NOW, device=ONLINE)
    assert (on.kind, on.action) == ("local", "privacy_on")
    off = route(query("turn off privacy mode"), now=NOW, device=ONLINE)
    assert off.action == "privacy_off"
    private = DeviceStatus(privacy=True)
    d = route(query("what does it say", SIGN), now=NOW, device=private)
    assert d.kind == "local" and "camera is off" in d.reply and "EXIT" not in d.reply
    # Escalated with privacy on: neither the camera's facts nor a keyframe leave the glasses.
    q = query("what's the weather like here?", SIGN, keyframes_jpeg=(JPEG,))
    d = route(q, now=NOW, device=private)
    assert d.kind == "escalate" and d.keyframe is None
    assert not d.facts.sees_something and d.facts.people_in_view == 0
    assert d.facts.local_datetime() == NOW


def test_escalation_carries_facts_and_a_keyframe_only_for_visual_questions() -> None:
    scene = seen(text=(("EXIT 12", 0.97, (40, 20, 200, 70)),), center=(("street sign", 0.4),),
                 barcodes=(("EAN13", "4006381333931"),), faces=2)
    q = query("How far is this exit from the airport?", scene, keyframes_jpeg=(JPEG,))
    d = route(q, now=NOW, device=ONLINE)
    assert (d.kind, d.rule) == ("escalate", "escalate")
    assert d.facts.text == ("EXIT 12",)
    # The symbology as it is spoken: the gateway never needs the router's vocabulary.
    assert d.facts.barcodes == (SeenBarcode(type="EAN-13", data="4006381333931"),)
    assert d.facts.people_in_view == 2
    assert d.facts.local_time == "2026-11-03T14:05:00+01:00"
    assert d.facts.intent == "other"
    json.dumps(d.facts.to_wire())  # plain JSON data, ready for the wire
    assert d.keyframe is not None
    knowledge = route(query("who wrote Hamlet?", scene, keyframes_jpeg=(JPEG,)), now=NOW,
                      device=ONLINE)
    assert knowledge.kind == "escalate" and knowledge.keyframe is None
    assert "not about what is in view" in knowledge.reason


def test_contemplate_by_flag_or_keyword() -> None:
    by_flag = route(query("tell me about this building", contemplate=True), now=NOW,
                    device=ONLINE)
    assert by_flag.kind == "contemplate" and "asks for contemplating" in by_flag.reason
    by_word = route(query("Should I take this exit?"), now=NOW, device=ONLINE)
    assert by_word.kind == "contemplate" and "'should i'" in by_word.reason
    custom = RouterConfig(contemplate_keywords=("ponder",))
    assert route(query("should I?"), now=NOW, device=ONLINE, config=custom).kind == "escalate"
    # Device-answerable queries stay local even with the flag.
    assert route(query("what time is it", contemplate=True), now=NOW,
                 device=ONLINE).kind == "local"


def test_the_keyframe_is_sharp_matches_the_facts_and_is_never_stale() -> None:
    old = Keyframe(timestamp_s=90.0, jpeg=b"old", sharpness=900.0)
    near = Keyframe(timestamp_s=99.4, jpeg=b"near", sharpness=480.0)
    late = Keyframe(timestamp_s=100.0, jpeg=b"late", sharpness=500.0)
    blurred = Keyframe(timestamp_s=99.5, jpeg=b"blurred", sharpness=100.0)
    frames = [old, near, late, blurred]

    def pick(anchor_s: float | None, candidates: list[Keyframe] = frames) -> Keyframe | None:
        return pick_keyframe(candidates, sharpness_of=lambda k: k.sharpness, now_s=100.0,
                             max_age_s=3.0, anchor_s=anchor_s)

    # Of the sharp ones (within 10 % of the sharpest fresh one), the nearest the facts' time;
    # the blurred frame at exactly that time is not sent.
    assert pick(99.5) is near
    assert pick(None) is late  # no facts: the newest sharp one
    assert pick(None, [old]) is None  # stale: never sent, however sharp
    q = query("what is on this shelf?", SIGN)
    d = route(q, now=NOW, device=ONLINE, keyframes=[old])
    assert d.keyframe is None and "none within 3 s" in d.reason
    d = route(q, now=NOW, device=ONLINE, keyframes=frames)
    assert d.keyframe is near  # SIGN was perceived at 99.5


def test_offline_fallback_gives_the_best_device_answer_and_says_so() -> None:
    scene = seen(center=(("tabby", 0.62),))
    q = query("is this cat friendly?", scene)
    d = offline_fallback(q, now=NOW, device=ONLINE, cause="timeout")
    assert (d.kind, d.rule, d.offline) == ("local", "offline", True)
    assert d.reply == "I'm offline, but I can see a tabby."
    assert "cloud timeout" in d.reason
    sign = offline_fallback(query("where does this road go?", SIGN), now=NOW, device=ONLINE)
    assert sign.reply == "I'm offline, but I can read: EXIT 12. Main Street."
    unsure = offline_fallback(query("what is this?", seen(center=(("moped", 0.3),))), now=NOW,
                              device=ONLINE)
    assert unsure.reply == "I'm offline, and not sure what I see. It might be a moped."
    blank = offline_fallback(query("who wrote Hamlet?"), now=NOW, device=ONLINE)
    assert blank.reply == "I'm offline and can't answer that on the glasses."
    read = offline_fallback(query("read this", SIGN), now=NOW, device=ONLINE)
    assert read.reply == "I'm offline, but it says: EXIT 12. Main Street."


def test_a_known_offline_link_answers_at_once() -> None:
    offline = DeviceStatus(link=LinkState.OFFLINE)
    d = route(query("is this cat friendly?", seen(center=(("tabby", 0.62),))), now=NOW,
              device=offline)
    assert d.kind == "local" and d.offline and d.reply.startswith("I'm offline")
    assert "cloud offline" in d.reason


def test_every_decision_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="glasses_agent.edge.router"):
        decisions: list[Decision] = [
            route(query("what time is it"), now=NOW, device=ONLINE),
            route(query("who wrote Hamlet?"), now=NOW, device=ONLINE),
            offline_fallback(query("who wrote Hamlet?"), now=NOW, device=ONLINE),
        ]
    records = [r for r in caplog.records if r.name == "glasses_agent.edge.router"]
    assert len(records) == len(decisions)
    for record, decision in zip(records, decisions, strict=True):
        assert record.__dict__["reason"] == decision.reason != ""
        assert record.__dict__["rule"] == decision.rule
        assert record.__dict__["decision_kind"] == decision.kind
        assert record.__dict__["query_id"] == "q1"


def test_facts_without_perception_and_decisions_are_frozen() -> None:
    facts = facts_from_perception(None, now=NOW)
    assert facts == Facts(local_time="2026-11-03T14:05:00+01:00")
    d = route(query("what time is it"), now=NOW, device=ONLINE)
    with pytest.raises(AttributeError):
        d.reply = "changed"  # type: ignore[misc]


def test_public_exports() -> None:
    import glasses_agent.edge.router as router

    assert len(set(router.__all__)) == len(router.__all__)
    for name in router.__all__:
        assert hasattr(router, name), name


@pytest.mark.parametrize(
    ("text", "intent"),
    [
        ("Hey glasses, remember where I parked", "remember"),
        ("remember that the meeting is at three", "remember"),
        ("take a note that the code is 4512", "remember"),
        ("where did I park?", "recall"),
        ("Where's my car?", "recall"),
        ("what did I ask you to remember?", "recall"),
        ("do you remember where I left my keys", "recall"),
        # Not notes: a question about remembering, or a memory question for the cloud.
        ("remember what the capital of Peru is?", "other"),
        ("how do I remember names better", "other"),
    ],
)
def test_note_intents(text: str, intent: str) -> None:
    assert classify(text) == intent


def test_remember_keeps_a_note_with_what_was_seen_and_recall_finds_it() -> None:
    level = seen(text=(("LEVEL 3", 0.95, (0, 0, 50, 20)), ("Zone B", 0.9, (0, 30, 50, 50))))
    d = route(query("remember where I parked", level), now=NOW, device=ONLINE)
    assert (d.kind, d.rule, d.action) == ("local", "remember", "remember")
    assert d.reply == "Okay, I'll remember: where you parked."
    assert d.note is not None and d.note.text == "where i parked"
    assert d.note.facts.text == ("LEVEL 3", "Zone B")
    coffee = route(query("remember that the coffee is on the top shelf"), now=NOW,
                   device=ONLINE).note
    assert coffee is not None
    later = NOW + timedelta(minutes=42)
    device = DeviceStatus(link=LinkState.CONNECTED, notes=(d.note, coffee))
    answer = route(query("where did I park my car?"), now=later, device=device)
    assert (answer.kind, answer.rule) == ("local", "recall")
    assert answer.reply.startswith("You asked me to remember: where you parked, 42 minutes ago.")
    assert "LEVEL 3. Zone B." in answer.reply
    shelf = route(query("do you remember where the coffee is"), now=later, device=device)
    assert "top shelf" in shelf.reply and "LEVEL" not in shelf.reply


def test_recall_with_no_notes_says_so_and_privacy_keeps_no_camera_facts() -> None:
    d = route(query("where did I park"), now=NOW, device=ONLINE)
    assert d.reply == "You haven't asked me to remember anything yet."
    private = DeviceStatus(link=LinkState.CONNECTED, privacy=True)
    level = seen(text=(("LEVEL 3", 0.95, (0, 0, 50, 20)),))
    kept = route(query("remember where I parked", level), now=NOW, device=private).note
    assert kept is not None and kept.facts == Facts()
