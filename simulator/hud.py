"""What the glasses show, drawn as one picture: the camera view with perception overlays,
the HUD text (what was heard, the answer as it streams), the assistant's state, the
capture LED, the link, the microphone, and the help overlay.

``Hud`` follows the runtime's events (``glasses_agent.edge.events``; it is an
``on_event`` watcher, thread-safe) plus what the simulator itself does (mute,
push-to-talk, a photo taken). ``render(view, camera)`` draws a ``HudView`` onto a
BGR image; it reads no clock and no globals, so a test renders it without a window.

The camera view is what the glasses last looked at: the frame perception ran on
(kept only while the privacy switch is off), with the overlays perception made
from it and its faces blurred as they would leave the glasses
(``perception.privacy.blur_regions``). The LED is drawn from the privacy switch
itself when the caller has it (``led_on``): the same gate that lets frames be kept
or sent.
"""

from __future__ import annotations

import dataclasses
import functools
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2
from glasses_agent.edge.events import (
    Answered,
    AnswerText,
    AssistantState,
    BargedIn,
    Decided,
    Heard,
    LedChanged,
    LinkChanged,
    Perceived,
    RuntimeEvent,
    StateChanged,
    TurnTimings,
)
from glasses_agent.frames import LinkState, Perception
from simulator.keys import KEYS

__all__ = ["CAMERA_BOX", "HEIGHT", "LED_CENTER", "WIDTH", "Hud", "HudView", "render"]

UInt8Array = npt.NDArray[np.uint8]

WIDTH, HEIGHT = 1000, 600
TOP_BAR = 44
CAMERA_BOX = (0, TOP_BAR, 640, TOP_BAR + 480)  # x0, y0, x1, y1 of the camera view
PANEL_X = 656
LED_CENTER = (WIDTH - 24, TOP_BAR // 2)
LED_RADIUS = 11
# Colours, BGR.
BACKGROUND = (24, 20, 20)
TEXT = (235, 235, 235)
DIM = (150, 150, 150)
LED_ON = (40, 40, 235)
LED_OFF = (70, 70, 70)
STATE_COLOURS = {
    AssistantState.IDLE: (150, 150, 150),
    AssistantState.LISTENING: (80, 200, 80),
    AssistantState.THINKING: (40, 190, 240),
    AssistantState.SPEAKING: (240, 170, 60),
    AssistantState.OFFLINE: (60, 60, 200),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HudView:
    """Everything one picture of the HUD shows (a snapshot of ``Hud``)."""

    state: AssistantState = AssistantState.IDLE
    led_on: bool = False
    camera: bool = True  # False: the glasses run with no camera at all
    link: LinkState | None = None  # None: no cloud
    network_up: bool = True
    heard: str = ""
    answer: str = ""
    answer_meta: str = ""
    interrupted: bool = False
    perception: Perception | None = None
    muted: bool = False
    talking: bool = False  # push-to-talk in progress
    battery_percent: float | None = None
    location: tuple[float, float] | None = None
    notice: str = ""
    help: bool = False
    title: str = ""


class Hud:
    """The HUD's state, from the runtime's events (call it as ``on_event``) and the
    simulator's own doings; ``view()`` is a consistent snapshot for drawing."""

    def __init__(self, **initial: Any) -> None:
        self._lock = threading.Lock()
        self._view = HudView(**initial)
        self._query = ""

    def view(self, **overrides: Any) -> HudView:
        with self._lock:
            return dataclasses.replace(self._view, **overrides)

    def set(self, **changes: Any) -> None:
        with self._lock:
            self._view = dataclasses.replace(self._view, **changes)

    def __call__(self, event: RuntimeEvent) -> None:
        with self._lock:
            self._view = self._next(self._view, event)

    def _next(self, view: HudView, event: RuntimeEvent) -> HudView:
        replace = dataclasses.replace
        if isinstance(event, StateChanged):
            talking = view.talking and event.state is AssistantState.LISTENING
            return replace(view, state=event.state, talking=talking)
        if isinstance(event, LedChanged):
            return replace(view, led_on=event.on)
        if isinstance(event, LinkChanged):
            return replace(view, link=event.link)
        if isinstance(event, Perceived):
            return replace(view, perception=event.perception)
        if isinstance(event, Heard) and event.question:
            self._query = event.query_id
            return replace(view, heard=event.question, answer="", answer_meta="",
                           interrupted=False, talking=False)
        if isinstance(event, Decided) and event.query_id == self._query:
            return replace(view, answer_meta=f"{event.kind} by {event.rule}")
        if isinstance(event, AnswerText) and event.query_id == self._query:
            return replace(view, answer=view.answer + event.text)
        if isinstance(event, Answered) and event.query_id == self._query:
            return replace(view, answer=event.text or view.answer,
                           answer_meta=f"{event.route} · {event.rule}")
        if isinstance(event, TurnTimings) and event.query_id == self._query:
            return replace(view, answer_meta=f"{view.answer_meta} · {event.total_ms:.0f} ms")
        if isinstance(event, BargedIn):
            return replace(view, interrupted=True)
        return view


# -- drawing ---------------------------------------------------------------------------------
@functools.cache
def _font(size_px: int) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size_px)


def _wrap(text: str, font: Any, width_px: int, max_lines: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}".strip()
            if line and font.getlength(candidate) > width_px:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    if len(lines) > max_lines:  # keep the end: the newest words of a streaming answer
        lines = ["…" + lines[-max_lines][:]] + lines[-max_lines + 1:]
    return lines


def _fit(image: UInt8Array, width: int, height: int) -> tuple[UInt8Array, float, int, int]:
    """``image`` scaled to fit, and (scale, x offset, y offset) in the box."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    fitted = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1
                        else cv2.INTER_LINEAR)
    return fitted, scale, (width - size[0]) // 2, (height - size[1]) // 2


def _camera_view(view: HudView, camera: UInt8Array | None,
                 texts: list[tuple[tuple[int, int], str, tuple[int, int, int], int]]
                 ) -> UInt8Array:
    """The camera box: the frame, faces blurred, boxes drawn; labels queued in ``texts``."""
    from glasses_agent.edge.perception.privacy import blur_regions

    cv2 = _cv2()
    x0, y0, x1, y1 = CAMERA_BOX
    box = np.full((y1 - y0, x1 - x0, 3), 32, np.uint8)
    if camera is None:
        why = "camera off (privacy switch)" if view.camera and not view.led_on else \
            "no camera" if not view.camera else "waiting for the first look"
        texts.append(((x0 + 24, y0 + (y1 - y0) // 2 - 12), why, DIM, 24))
        return box
    perception = view.perception
    faces = [f for f in (perception.faces if perception else ())]
    shown = blur_regions(camera, faces) if faces else camera
    fitted, scale, ox, oy = _fit(shown, x1 - x0, y1 - y0)
    box[oy:oy + fitted.shape[0], ox:ox + fitted.shape[1]] = fitted

    def at(b: tuple[int, int, int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
        return ((ox + round(b[0] * scale), oy + round(b[1] * scale)),
                (ox + round(b[2] * scale), oy + round(b[3] * scale)))

    if perception is not None:
        for line in perception.text:
            p, q = at(line.box)
            cv2.rectangle(box, p, q, (80, 220, 80), 2)
        for code in perception.barcodes:
            p, q = at(code.box)
            cv2.rectangle(box, p, q, (220, 200, 40), 2)
            texts.append(((x0 + p[0], y0 + q[1] + 2), f"{code.type} {code.data}",
                          (220, 200, 40), 16))
        for face in faces:
            p, q = at(face)
            cv2.rectangle(box, p, q, (60, 200, 230), 1)
            texts.append(((x0 + p[0], y0 + max(0, p[1] - 18)), "face blurred",
                          (60, 200, 230), 14))
        labels = "  ·  ".join(f"{label.name} {label.score:.2f}"
                              for label in perception.labels[:3])
        if labels:
            cv2.rectangle(box, (0, y1 - y0 - 28), (x1 - x0, y1 - y0), (0, 0, 0), -1)
            texts.append(((x0 + 8, y1 - 24), labels, TEXT, 16))
    return box


def _top_bar(view: HudView, image: UInt8Array,
             texts: list[tuple[tuple[int, int], str, tuple[int, int, int], int]]) -> None:
    cv2 = _cv2()
    colour = STATE_COLOURS[view.state]
    cv2.circle(image, (18, TOP_BAR // 2), 8, colour, -1, cv2.LINE_AA)
    texts.append(((32, 10), view.state.value.upper(), colour, 20))
    link = "no cloud" if view.link is None else f"cloud {view.link.value}"
    if not view.network_up:
        link += " (network cut)"
    parts = [link]
    if view.battery_percent is not None:
        parts.append(f"battery {view.battery_percent:.0f}%")
    if view.location is not None:
        parts.append(f"{view.location[0]:.4f}, {view.location[1]:.4f}")
    parts.append("MIC MUTED" if view.muted else "mic on")
    if view.talking:
        parts.append("TALK")
    texts.append(((170, 13), "   ".join(parts), TEXT, 16))
    cv2.circle(image, LED_CENTER, LED_RADIUS, LED_ON if view.led_on else LED_OFF, -1,
               cv2.LINE_AA)
    texts.append(((LED_CENTER[0] - 60, 13), "LED", LED_ON if view.led_on else DIM, 16))


def _panel(view: HudView,
           texts: list[tuple[tuple[int, int], str, tuple[int, int, int], int]]) -> None:
    width = WIDTH - PANEL_X - 16
    y = TOP_BAR + 12
    texts.append(((PANEL_X, y), "You", DIM, 16))
    heard = view.heard or ("listening…" if view.state is AssistantState.LISTENING else "")
    for line in _wrap(heard, _font(20), width, 4):
        y += 26
        texts.append(((PANEL_X, y), line, TEXT, 20))
    y += 44
    texts.append(((PANEL_X, y), "Glasses", DIM, 16))
    answer = view.answer or ("thinking…" if view.state is AssistantState.THINKING else "")
    for line in _wrap(answer, _font(20), width, 11):
        y += 26
        texts.append(((PANEL_X, y), line, TEXT, 20))
    if view.answer_meta or view.interrupted:
        y += 34
        meta = view.answer_meta + ("  (interrupted)" if view.interrupted else "")
        texts.append(((PANEL_X, y), meta, DIM, 16))


def _help_box() -> tuple[int, int, int, int]:
    x0, y0 = 40, TOP_BAR + 40
    return x0, y0, WIDTH - 40, y0 + 56 + 30 * len(KEYS)


def _in_help_box(at: tuple[int, int]) -> bool:
    x0, y0, x1, y1 = _help_box()
    return x0 - 20 <= at[0] < x1 and y0 - 30 <= at[1] < y1


def _help(image: UInt8Array,
          texts: list[tuple[tuple[int, int], str, tuple[int, int, int], int]]) -> None:
    x0, y0, x1, y1 = _help_box()
    region = image[y0:y1, x0:x1]
    region[:] = (region.astype(np.float32) * 0.15).astype(np.uint8)
    texts.append(((x0 + 20, y0 + 14), "Keys", TEXT, 22))
    for i, key in enumerate(KEYS):
        y = y0 + 52 + 30 * i
        texts.append(((x0 + 20, y), key.label, (80, 220, 80), 20))
        texts.append(((x0 + 110, y), key.help, TEXT, 20))


def render(view: HudView, camera: UInt8Array | None) -> UInt8Array:
    """The HUD as a ``WIDTH`` x ``HEIGHT`` BGR image (see the module docstring)."""
    from PIL import Image, ImageDraw

    image = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    texts: list[tuple[tuple[int, int], str, tuple[int, int, int], int]] = []
    x0, y0, x1, y1 = CAMERA_BOX
    image[y0:y1, x0:x1] = _camera_view(view, camera, texts)
    _top_bar(view, image, texts)
    _panel(view, texts)
    hint = "space talk   c photo   p privacy   m mute   n network   h help   q quit"
    texts.append(((16, HEIGHT - 62), view.notice, (80, 220, 240), 18))
    texts.append(((16, HEIGHT - 32), hint, DIM, 16))
    if view.title:
        texts.append(((PANEL_X, HEIGHT - 62), view.title, DIM, 16))
    if view.help:
        texts = [t for t in texts if not _in_help_box(t[0])]
        _help(image, texts)
    canvas = Image.fromarray(image[:, :, ::-1])
    draw = ImageDraw.Draw(canvas)
    for (x, y), text, colour, size in texts:
        if text:
            draw.text((x, y), text, font=_font(size), fill=colour[::-1])
    return np.ascontiguousarray(np.asarray(canvas)[:, :, ::-1])
