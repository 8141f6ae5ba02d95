"""Remember and recall: "remember where I parked", then "where did I park?".

Notes are kept on the device (by the runtime: ``DeviceStatus.notes``); a note
keeps what the camera read and recognised then (never who was there).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from datetime import datetime

from glasses_agent.edge.router.decision import Note
from glasses_agent.edge.router.facts import facts_from_perception
from glasses_agent.edge.router.language import normalize, read_out, second_person, whole
from glasses_agent.edge.router.skills.base import Answer, Context, Skill
from glasses_agent.protocol import Facts
from glasses_agent.spoken import spoken_date

__all__ = ["RECALL", "REMEMBER"]

_LEAD = re.compile(
    r"^(?:please )?(?:remember|(?:take|make) a note|note|don't let me forget)(?: that| of)?\s+"
)
_STOPWORDS = frozenset(
    "the a an i my me you your is was did do to of at in on where what that this it".split()
)


def _remember(ctx: Context) -> Answer:
    text = _LEAD.sub("", normalize(ctx.query.text)) or normalize(ctx.query.text)
    seen = (Facts() if ctx.device.privacy
            else facts_from_perception(ctx.query.perception, now=ctx.now, config=ctx.config))
    # What the camera read and recognised; not who was there, nor the time (kept apart).
    seen = dataclasses.replace(seen, local_time="", people_in_view=0)
    note = Note(text=text, timestamp=ctx.now, facts=seen, location=ctx.device.location)
    return Answer(rule="remember", reply=f"Okay, I'll remember: {second_person(text)}.",
                  reason="notes are kept on the device", action="remember", note=note)


def _ago(then: datetime, now: datetime) -> str:
    minutes = max(0, int((now - then).total_seconds() // 60))
    if minutes < 1:
        return "just now"
    if minutes < 120:
        return f"{minutes} minute{'s' if minutes != 1 else ''} ago"
    hours = minutes // 60
    return f"{hours} hours ago" if hours < 48 else f"on {spoken_date(then)}"


def best_note(question: str, notes: Sequence[Note]) -> tuple[Note, int] | None:
    """The note sharing most word stems with ``question`` (the newest on a tie)."""
    if not notes:
        return None
    wanted = set(normalize(question).split()) - _STOPWORDS

    def overlap(note: Note) -> int:  # "park" finds "parked": stems of at least four letters
        words = set(note.text.split()) - _STOPWORDS
        return sum(1 for w in wanted for n in words if w[:4] == n[:4])

    best = max(enumerate(notes), key=lambda item: (overlap(item[1]), item[0]))[1]
    return best, overlap(best)


def _recall(ctx: Context) -> Answer:
    found = best_note(ctx.query.text, ctx.device.notes)
    if found is None:
        return Answer(rule="recall", reply="You haven't asked me to remember anything yet.",
                      reason="no notes kept")
    note, shared = found
    parts = [f"You asked me to remember: {second_person(note.text)}, "
             f"{_ago(note.timestamp, ctx.now)}."]
    if note.facts.text:
        parts.append(f"The text in view then was: {read_out(note.facts.text)}")
    if note.location is not None:
        parts.append(f"Location: {note.location[0]:.5f}, {note.location[1]:.5f}.")
    return Answer(rule="recall", reply=" ".join(parts),
                  reason=f"recalled a note ({shared} shared words)")


# "remember where I parked", "remember that the meeting is at 3", "note that ...".
REMEMBER = Skill(name="remember", answer=_remember, wants_view=True, patterns=(whole(
    r"(?:please )?remember (?!what|when|where did|how|if|whether)\S.*|"
    r"(?:take|make) a note(?: that| of)? \S.*|note that \S.*|don't let me forget \S.*"
),))
# "where did I park", "what did I ask you to remember", "where's my car".
RECALL = Skill(name="recall", answer=_recall, patterns=(whole(
    r"where did i (?:park|leave|put) .*|where did i park|where(?: is|'s|s) my car|"
    r"where i parked|what did i (?:ask you to |tell you to )?(?:remember|note)|"
    r"(?:what|where) (?:was|is) (?:the|my) note|what are my notes|"
    r"do you remember (?:where|what) .*|remind me (?:where|what) .*"
),))
