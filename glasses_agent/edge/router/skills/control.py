"""Stop: "stop", "never mind", "that's enough": the answer in progress ends and nothing is
said. (The runtime has already stopped speaking when the wearer began: a barge-in.)"""

from __future__ import annotations

from glasses_agent.edge.router.language import whole
from glasses_agent.edge.router.skills.base import Answer, Context, Skill

__all__ = ["STOP"]


def _stop(ctx: Context) -> Answer:
    return Answer(rule="stop", reply="", reason="asked to stop")


STOP = Skill(name="stop", answer=_stop, patterns=(whole(
    r"stop(?: it| talking| that| please)?|cancel(?: that| it)?|never ?mind|be quiet|quiet|"
    r"shut up|enough|(?:that's|that is) (?:enough|all)|(?:ok |okay )?thanks?(?: you)?"
    r"(?: that's all)?"
),))
