"""The conversation as text, as it happens: what the wearer asked, what the router decided,
what the glasses answered (with route and latency), barge-ins, the LED and the link.

``Conversation`` is a runtime-event watcher; ``note`` adds what the simulator itself
did (a key, a scripted step).
"""

from __future__ import annotations

import sys
import threading
from typing import IO

from glasses_agent.edge.events import (
    Answered,
    BargedIn,
    Decided,
    Heard,
    LedChanged,
    LinkChanged,
    RuntimeEvent,
    TurnTimings,
)

__all__ = ["Conversation"]


class Conversation:
    """Prints to ``out`` (stdout), each line indented by ``indent``."""

    def __init__(self, out: IO[str] | None = None, *, indent: str = "  ") -> None:
        self.out = out or sys.stdout
        self.indent = indent
        self._lock = threading.Lock()
        self._answers: dict[str, Answered] = {}
        self._led: bool | None = None
        self._link: str | None = None

    def line(self, who: str, text: str) -> None:
        with self._lock:
            self.out.write(f"{self.indent}{who:<9}{text}\n")
            self.out.flush()

    def note(self, text: str) -> None:
        self.line("·", text)

    def __call__(self, event: RuntimeEvent) -> None:
        if isinstance(event, Heard) and event.question:
            self.line("you", event.question)
        elif isinstance(event, Decided):
            offline = ", offline" if event.offline else ""
            self.line("", f"({event.kind} by {event.rule}{offline}: {event.reason})")
        elif isinstance(event, Answered):
            self._answers[event.query_id] = event
        elif isinstance(event, TurnTimings):
            answered = self._answers.pop(event.query_id, None)
            if answered is not None:
                cut = ", interrupted" if answered.cancelled else ""
                self.line("glasses", f"{answered.text}   [{answered.route}, "
                                     f"{event.total_ms:.0f} ms{cut}]")
        elif isinstance(event, BargedIn):
            self.note(f"interrupted after {event.heard_chars} characters (playback stopped in "
                      f"{event.stop_ms:.0f} ms)")
        elif isinstance(event, LedChanged):
            if self._led is not None and event.on != self._led:
                self.note("capture LED on" if event.on else "capture LED off: no frame is "
                                                             "kept or sent")
            self._led = event.on
        elif isinstance(event, LinkChanged):
            if self._link is not None and event.link.value != self._link:
                self.note(f"cloud link {event.link.value}")
            self._link = event.link.value
