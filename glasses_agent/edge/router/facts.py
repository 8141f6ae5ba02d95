"""What leaves the glasses with an escalated query: ``Facts`` from a ``Perception``.

One place decides it (the router's), so that the prompts, the contemplating
agents and a kept note see the same: text lines at or above ``min_text_score``
in reading order, the whole frame's and the centre's labels (best first, at most
five each), barcodes with their symbology as spoken, a count of people (never
faces), the location only when the wearer allows it, and the local time.
"""

from __future__ import annotations

from datetime import datetime

from glasses_agent.config import RouterConfig
from glasses_agent.frames import Label, Perception
from glasses_agent.protocol import Facts, Location, SeenBarcode, SeenLabel
from glasses_agent.spoken import barcode_type_name

__all__ = ["facts_from_perception"]

MAX_LABELS = 5
_DEFAULT_CONFIG = RouterConfig()


def _seen(labels: tuple[Label, ...]) -> tuple[SeenLabel, ...]:
    best = sorted(labels, key=lambda label: label.score, reverse=True)[:MAX_LABELS]
    return tuple(SeenLabel(name=lb.name, score=round(lb.score, 2)) for lb in best)


def facts_from_perception(
    perception: Perception | None,
    *,
    now: datetime,
    config: RouterConfig = _DEFAULT_CONFIG,
    intent: str = "",
    location: tuple[float, float] | None = None,
) -> Facts:
    """The facts sent with an escalated query (``now`` with its time zone: the wearer's
    local time); ``location`` only when the wearer allows it."""
    where = None if location is None else Location(lat=round(location[0], 5),
                                                   lon=round(location[1], 5))
    facts = Facts(local_time=now.isoformat(timespec="seconds"), intent=intent, location=where)
    if perception is None:
        return facts
    return Facts(
        text=tuple(" ".join(t.text.split()) for t in perception.text
                   if t.score >= config.min_text_score and t.text.strip()),
        labels=_seen(perception.labels),
        center_labels=_seen(perception.center_labels),
        barcodes=tuple(SeenBarcode(type=barcode_type_name(b.type), data=b.data)
                       for b in perception.barcodes),
        people_in_view=len(perception.faces),
        location=facts.location, local_time=facts.local_time, intent=intent,
        extra=dict(perception.extra),
    )
