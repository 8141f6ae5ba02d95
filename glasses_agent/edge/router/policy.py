"""The on-device router: answer here what the glasses can, escalate the rest.

Pure policy. ``route`` takes the query, the wall-clock time (``now``), the
device's state and the candidate keyframes as arguments, reads no clock, does
no I/O, and returns a ``Decision``; every decision is logged (logger
``glasses_agent.edge.router``) with its rule and reason, which the decision also
carries. ``offline_fallback`` is the best on-device answer for a query the
cloud could not answer (timeout, offline), said as such.

What is answered on the device is the skills' business (``router.skills``:
remember and recall, privacy, time and date, device status, barcodes, prices,
text, "what is this"); the first skill whose pattern matches the question
answers it. Then, in order:

1. in privacy mode, a skill that needs the camera: "the camera is off";
2. the skill's answer, when it has one;
3. a skill that cannot answer and may not escalate (``escalate_unsure`` off):
   its local reply ("I'm not sure ...");
4. the link down (``DeviceStatus.link`` is ``LinkState.OFFLINE``): the offline
   fallback at once rather than after a timeout;
5. the query's ``contemplate`` flag or a ``contemplate_keywords`` phrase:
   escalate in contemplating mode;
6. everything else: escalate with the facts, and a keyframe when the question
   is a camera skill's or refers to what is in view.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal

from glasses_agent.config import RouterConfig
from glasses_agent.edge.perception.keyframe import pick_keyframe
from glasses_agent.edge.router.decision import Decision, DeviceStatus, Keyframe, Kind
from glasses_agent.edge.router.facts import facts_from_perception
from glasses_agent.edge.router.language import is_visual, normalize, read_out, spoken_barcode
from glasses_agent.edge.router.skills import Answer, Context, classify, skill_named
from glasses_agent.frames import LinkState, Query
from glasses_agent.spoken import article

__all__ = ["offline_fallback", "route"]

logger = logging.getLogger("glasses_agent.edge.router")

_DEFAULT_CONFIG = RouterConfig()


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


def _local(query: Query, answer: Answer, **rest: Any) -> Decision:
    return _decision(query, "local", answer.rule, answer.reason, reply=answer.reply,
                     action=answer.action, note=answer.note, **rest)


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
    skill = skill_named(intent)
    ctx = Context(query=query, intent=intent, now=now, device=device, config=config)
    if skill is not None:
        if device.privacy and skill.needs_camera:
            return _decision(query, "local", "privacy", "privacy mode: the camera is off",
                             reply="The camera is off in privacy mode. Say 'camera on' to use "
                                   "it.")
        answer = skill.answer(ctx)
        if answer is not None:
            return _local(query, answer)
        if skill.unanswered is not None and not config.escalate_unsure:
            return _local(query, skill.unanswered(ctx))
    if device.link is LinkState.OFFLINE:
        return offline_fallback(query, now=now, device=device, config=config, cause="offline")
    contemplate, why = _wants_contemplating(query, config)
    facts = facts_from_perception(None if device.privacy else query.perception, now=now,
                                  config=config, intent=intent, location=device.location)
    keyframe, image_why = _keyframe_for(ctx, keyframes)
    if contemplate:
        return _decision(query, "contemplate", "contemplate", f"{why}; {image_why}",
                         facts=facts, keyframe=keyframe)
    escalation = skill.escalation_reason if skill is not None else "not answerable on the device"
    return _decision(query, "escalate", "escalate", f"{escalation}; {image_why}", facts=facts,
                     keyframe=keyframe)


def _wants_contemplating(query: Query, config: RouterConfig) -> tuple[bool, str]:
    if query.contemplate:
        return True, "the query asks for contemplating mode"
    text = normalize(query.text)
    for keyword in config.contemplate_keywords:
        if keyword and f" {keyword.lower()} " in f" {text} ":
            return True, f"contemplate keyword {keyword!r}"
    return False, ""


def _keyframe_for(ctx: Context, keyframes: Sequence[Keyframe]) -> tuple[Keyframe | None, str]:
    query, config = ctx.query, ctx.config
    skill = skill_named(ctx.intent)
    if ctx.device.privacy:
        return None, "no keyframe (privacy mode)"
    if not (skill is not None and skill.needs_camera) and not is_visual(query.text):
        return None, "no keyframe (the question is not about what is in view)"
    candidates = list(keyframes) or [
        Keyframe(timestamp_s=query.timestamp_s, jpeg=jpeg) for jpeg in query.keyframes_jpeg
    ]
    if not candidates:
        return None, "no keyframe (none offered)"
    chosen = pick_keyframe(
        candidates, sharpness_of=lambda k: k.sharpness, now_s=query.timestamp_s,
        max_age_s=config.keyframe_max_age_s,
        anchor_s=query.perception.timestamp_s if query.perception is not None else None,
    )
    if chosen is None:
        return None, f"no keyframe (none within {config.keyframe_max_age_s:g} s)"
    return chosen, f"keyframe from t={chosen.timestamp_s:.2f} s"


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
    ctx = Context(query=query, intent=intent, now=now, device=device, config=config)
    skill = skill_named(intent)
    answer = skill.answer(ctx) if skill is not None and skill.needs_camera else None
    if answer is not None:
        reply = answer.reply
        reply = f"I'm offline, but i{reply[1:]}" if reply.startswith("It") else (
            f"I'm offline. {reply}")
        what = answer.reason
    else:
        reply, what = _what_the_device_sees(ctx)
    reason = f"cloud {cause}: best on-device answer ({what})"
    return _decision(query, "local", "offline", reason, reply=reply, offline=True)


def _what_the_device_sees(ctx: Context) -> tuple[str, str]:
    """(reply, what it is from): the text, a barcode, or a label, as offline can say it."""
    if ctx.text_lines:
        return f"I'm offline, but I can read: {read_out(ctx.text_lines)}", "text"
    if ctx.barcodes:
        return (f"I'm offline, but I see a barcode. {spoken_barcode(ctx.barcodes[0])}",
                "barcode")
    label = ctx.in_view
    if label is not None:
        return f"I'm offline, but I can see {article(label.name)} {label.name}.", "label"
    guess = ctx.best_guess
    if guess is not None:
        return (f"I'm offline, and not sure what I see. It might be {article(guess.name)} "
                f"{guess.name}.", "unsure label")
    return "I'm offline and can't answer that on the glasses.", "nothing on the device"
