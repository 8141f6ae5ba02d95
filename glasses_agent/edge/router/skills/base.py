"""What an on-device skill is: its patterns, and how it answers from what the glasses know.

A skill owns one intent. ``patterns`` are matched on the normalised transcript
(``router.language.normalize``); the first skill in ``router.skills.SKILLS`` whose
pattern matches names the intent. ``answer`` then gets a ``Context`` (the query,
the time, the device's state, what the camera shows) and returns an ``Answer``
to speak on the device, or None when the device cannot answer (the query goes to
the cloud, or to the offline fallback). A skill that ``needs_camera`` is answered
"the camera is off" in privacy mode without being asked.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from glasses_agent.config import RouterConfig
from glasses_agent.edge.perception.recognition import in_view
from glasses_agent.edge.router.decision import Action, DeviceStatus, Note
from glasses_agent.frames import Barcode, Label, Perception, Query

__all__ = ["Answer", "Context", "Skill"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Everything a skill may answer from: no clock, no I/O, only these values."""

    query: Query
    intent: str
    now: datetime
    device: DeviceStatus
    config: RouterConfig

    @property
    def perception(self) -> Perception | None:
        """What the camera shows (None in privacy mode: nothing is seen)."""
        return None if self.device.privacy else self.query.perception

    @property
    def text_lines(self) -> list[str]:
        """Lines read, in reading order, those scoring at least ``min_text_score``."""
        p = self.perception
        if p is None:
            return []
        return [" ".join(t.text.split()) for t in p.text
                if t.score >= self.config.min_text_score and t.text.strip()]

    @property
    def barcodes(self) -> tuple[Barcode, ...]:
        p = self.perception
        return p.barcodes if p is not None else ()

    @property
    def in_view(self) -> Label | None:
        """The label to say "it looks like" with (None: not confident)."""
        p = self.perception
        if p is None:
            return None
        return in_view(p.labels, p.center_labels,
                       min_label_score=self.config.confident_label_score)

    @property
    def best_guess(self) -> Label | None:
        """The best label however unsure: the centre's first, else the whole frame's."""
        p = self.perception
        if p is None:
            return None
        for labels in (p.center_labels, p.labels):
            if labels:
                return max(labels, key=lambda label: label.score)
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Answer:
    """A reply spoken on the device. ``rule`` names what answered (usually the skill);
    ``reason`` says why, for the log; ``action`` asks the runtime to change state."""

    rule: str
    reply: str
    reason: str
    action: Action | None = None
    note: Note | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Skill:
    """One on-device skill (see the module docstring).

    ``unanswered``: the local reply when ``answer`` gives none and the router may not
    escalate (``[router] escalate_unsure`` off); ``escalation_reason``: why the query
    went to the cloud instead, for the log. ``wants_view``: the answer uses what is in
    view when there is one (a note keeps the sign in view), without needing the camera.
    """

    name: str
    patterns: tuple[re.Pattern[str], ...]
    answer: Callable[[Context], Answer | None]
    needs_camera: bool = False
    wants_view: bool = False
    unanswered: Callable[[Context], Answer] | None = None
    escalation_reason: str = "not answerable on the device"

    def matches(self, normalized: str) -> bool:
        return any(p.search(normalized) for p in self.patterns)
