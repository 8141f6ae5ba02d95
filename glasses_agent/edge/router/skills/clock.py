"""Time and date, from the ``now`` the runtime passes (never a clock read here)."""

from __future__ import annotations

from glasses_agent.edge.router.language import whole
from glasses_agent.edge.router.skills.base import Answer, Context, Skill
from glasses_agent.spoken import spoken_date, spoken_time

__all__ = ["DATE", "TIME"]


def _time(ctx: Context) -> Answer:
    return Answer(rule="time", reply=f"It's {spoken_time(ctx.now)}.",
                  reason="time is known on the device")


def _date(ctx: Context) -> Answer:
    return Answer(rule="date", reply=f"It's {spoken_date(ctx.now)}.",
                  reason="date is known on the device")


# "what time is it" (not "what time is it in Tokyo": that is for the cloud).
TIME = Skill(name="time", answer=_time, patterns=(whole(
    r"what time is it|what's the time|what is the time|whats the time|(?:tell me )?the time|"
    r"time|current time|have you got the time|do you have the time|what time it is"
),))
DATE = Skill(name="date", answer=_date, patterns=(whole(
    r"(?:what's|what is|whats) (?:the date|today's date|todays date)(?: today)?|"
    r"what date is it(?: today)?|(?:today's|todays) date|the date|date|what the date is|"
    r"what day is (?:it|today)(?: today)?|(?:what's|what is|whats) today|what day it is"
),))
