"""The simulator's window: the HUD picture (``simulator.hud``) in a Tk window, and the keys.

Tk rather than OpenCV's highgui: the temple tap's hold-to-talk needs the key's
release, which Tk reports (``<KeyRelease>``) and highgui's ``waitKey`` does not;
and Tk ships with Python (Debian ``python3-tk``), so the one OpenCV build the
package uses (``opencv-python-headless``, which rapidocr also depends on) stays the
only one installed. The HUD is drawn as an image by ``simulator.hud`` and shown
as a Tk ``PhotoImage`` (binary PPM, no Pillow-Tk glue), about 15 times a second.

The simulation runs on another thread (its asyncio loop, the gateway, the
runtime); this one only draws and turns keys into calls on ``Simulation``, which
are safe from any thread. X11 repeats a held key as release/press pairs with the
same timestamp; those are ignored, so a held space bar is one long press.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from glasses_agent.errors import DeviceUnavailableError
from simulator.hud import HEIGHT, WIDTH, Hud, render
from simulator.keys import action_for
from simulator.session import Simulation

__all__ = ["TITLE", "Stage", "Window", "check_display"]

TITLE = "glasses-agent simulator"
FRAME_MS = 66
# A push-to-talk turn ended by the key: the microphone closes this long, so the turn
# ends at once (the longest silence the listener waits for, and a little).
_END_TURN_S = 1.2


def check_display() -> None:
    """One clear line when there is no display or no Tk, before anything loads."""
    import os

    try:
        import tkinter
    except ImportError as exc:
        raise DeviceUnavailableError(
            "the simulator's window needs Tk (apt-get install python3-tk); or pass "
            "--headless to run without a window") from exc
    if not os.environ.get("DISPLAY") and not os.environ.get("WAYLAND_DISPLAY"):
        raise DeviceUnavailableError(
            "no display ($DISPLAY is not set): pass --headless to run without a window, "
            "or run the window under Xvfb: xvfb-run -a glasses-agent simulate ...")
    try:
        root = tkinter.Tk()
    except tkinter.TclError as exc:
        raise DeviceUnavailableError(
            f"cannot open the display {os.environ.get('DISPLAY', '')} ({exc}): pass "
            "--headless to run without a window") from exc
    root.destroy()


@dataclass(eq=False)
class Stage:
    """What the window shows and drives, shared with the simulation's thread: the current
    ``Simulation`` (None while loading or between scenarios), whether the run is over."""

    hud: Hud
    sim: Simulation | None = None
    done: threading.Event = field(default_factory=threading.Event)
    quit: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None


class Window:
    """The Tk window (see the module docstring). ``run()`` until the stage is done or the
    window is closed; ``linger_s``: how long the last picture stays after the run ends."""

    def __init__(self, stage: Stage, *, ptt: str = "toggle", linger_s: float = 0.0,
                 end_turn_s: float = _END_TURN_S) -> None:
        import tkinter

        self.stage = stage
        self.ptt = ptt
        self.linger_s = linger_s
        self.end_turn_s = end_turn_s
        self.root = tkinter.Tk()
        self.root.title(TITLE)
        self.root.geometry(f"{WIDTH}x{HEIGHT}+0+0")
        self.root.resizable(False, False)
        self._photo: Any = None
        self.label = tkinter.Label(self.root, bd=0, highlightthickness=0)
        self.label.pack()
        self.root.protocol("WM_DELETE_WINDOW", self.close)
        self.root.bind("<KeyPress>", self._pressed)
        self.root.bind("<KeyRelease>", self._released)
        self._release_pending: str | None = None
        self._ended_at: float | None = None
        self.root.focus_force()

    # -- keys ----------------------------------------------------------------------------
    def _pressed(self, event: Any) -> None:
        if self._release_pending is not None:  # an auto-repeat's release/press pair
            self.root.after_cancel(self._release_pending)
            self._release_pending = None
            return
        action = action_for(event.keysym)
        if action is not None:
            self.act(action, down=True)

    def _released(self, event: Any) -> None:
        if action_for(event.keysym) != "talk" or self.ptt != "hold":
            return
        # A release followed at once by a press is X11 repeating a held key.
        self._release_pending = self.root.after(40, self._really_released)

    def _really_released(self) -> None:
        self._release_pending = None
        self.act("talk", down=False)

    def act(self, action: str, *, down: bool = True) -> None:
        """What a key does (also callable from tests)."""
        stage, sim = self.stage, self.stage.sim
        if action == "quit":
            self.close()
        elif action == "help":
            stage.hud.set(help=not stage.hud.view().help)
        elif sim is None:
            stage.hud.set(notice="not ready yet")
        elif action == "talk":
            self._talk(sim, down)
        elif action == "photo":
            sim.take_photo()
        elif action == "privacy":
            sim.press("privacy")
        elif action == "mute":
            sim.control.set_muted(not sim.control.muted)
            stage.hud.set(muted=sim.control.muted)
        elif action == "network":
            up = sim.link is not None and not sim.link.up
            sim.set_network(up)
            stage.hud.set(notice="network restored" if up else "network cut")

    def _talk(self, sim: Simulation, down: bool) -> None:
        hud = self.stage.hud
        if self.ptt == "hold":
            sim.control.set_held(down)
            if down:
                sim.press("tap")
            hud.set(talking=down)
            return
        if hud.view().talking:  # toggle: the second press ends the turn now
            sim.control.close_for(self.end_turn_s)
            hud.set(talking=False)
        else:
            sim.press("tap")
            hud.set(talking=True)

    # -- drawing -------------------------------------------------------------------------
    def _draw(self) -> None:
        import tkinter

        sim = self.stage.sim
        overrides: dict[str, Any] = {}
        camera = None
        if sim is not None:
            camera, perception = sim.camera_view()
            overrides = {"led_on": sim.led_on, "muted": sim.control.muted,
                         "network_up": sim.link is None or sim.link.up,
                         "perception": perception}
        image = render(self.stage.hud.view(**overrides), camera)
        rgb = image[:, :, ::-1].tobytes()
        header = f"P6 {image.shape[1]} {image.shape[0]} 255\n".encode()
        self._photo = tkinter.PhotoImage(data=header + rgb, format="PPM")
        self.label.configure(image=self._photo)

    def _tick(self) -> None:
        import time

        self._draw()
        if self.stage.done.is_set():
            if self._ended_at is None:
                self._ended_at = time.monotonic()
            if time.monotonic() - self._ended_at >= self.linger_s:
                self.root.destroy()
                return
        self.root.after(FRAME_MS, self._tick)

    def close(self) -> None:
        """Quit: stop the simulation; the window goes when the run has ended."""
        self.stage.quit.set()
        if self.stage.sim is not None:
            self.stage.sim.stop()
        self.linger_s = 0.0

    def run(self, on_interrupt: Callable[[], None] | None = None) -> None:
        self.root.after(0, self._tick)
        try:
            self.root.mainloop()
        except KeyboardInterrupt:
            self.close()
            if on_interrupt is not None:
                on_interrupt()
