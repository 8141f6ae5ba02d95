"""The simulator's keys, in one place: the window binds them, the help overlay and the
docs list them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["KEYS", "Key", "action_for"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Key:
    label: str  # as shown in the help
    keysyms: tuple[str, ...]  # Tk's names for it
    action: str
    help: str


KEYS = (
    Key(label="space", keysyms=("space",), action="talk",
        help="temple tap: push-to-talk (hold it down with --ptt hold)"),
    Key(label="c", keysyms=("c", "C"), action="photo",
        help="capture a photo (only while the LED is on)"),
    Key(label="p", keysyms=("p", "P"), action="privacy",
        help="privacy switch: camera and LED off, no frame kept or sent"),
    Key(label="m", keysyms=("m", "M"), action="mute", help="mute / unmute the microphone"),
    Key(label="n", keysyms=("n", "N"), action="network", help="cut / restore the network"),
    Key(label="h", keysyms=("h", "H", "question", "F1"), action="help",
        help="show / hide this help"),
    Key(label="q", keysyms=("q", "Q", "Escape"), action="quit", help="quit"),
)


def action_for(keysym: str) -> str | None:
    """The action a Tk keysym stands for, or None."""
    return next((key.action for key in KEYS if keysym in key.keysyms), None)
