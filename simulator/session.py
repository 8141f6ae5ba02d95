"""One simulated pair of glasses: the edge runtime with the simulator's hands on it.

``build_simulation`` is the one place where the simulator makes a runtime (through
``glasses_agent.edge.build.build_runtime``, the edge's composition root): the
microphone goes through ``MicControl`` (mute, push-to-talk), the cloud through a
``NetLink`` relay (so the network can be cut), and every runtime event goes to
each of ``watchers`` (the HUD, the printed conversation, a scenario's checks, a
recorder). ``Simulation`` then runs it and offers, from any thread, what the
glasses' buttons and the simulator's keys do.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from glasses_agent.clock import MonotonicClock
from glasses_agent.config import Config
from glasses_agent.edge.build import CloudTarget, Inputs, build_runtime, open_mic
from glasses_agent.edge.events import RuntimeEvent, Tap
from glasses_agent.edge.runtime import Runtime, RuntimeOptions, TurnResult
from glasses_agent.frames import AudioChunk, Perception
from simulator.mic import LiveMic, MicControl
from simulator.netlink import NetLink

if TYPE_CHECKING:
    from glasses_agent.edge.speech.asr import WhisperAsr

__all__ = ["Simulation", "SimulationInputs", "build_simulation"]

logger = logging.getLogger("simulator")

Watcher = Callable[[RuntimeEvent], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulationInputs:
    """What the simulated glasses get. ``camera``: a source (webcam index, file, folder) or
    None. ``mic``: a microphone (index or name, "" for the default), an audio file, or a
    ready iterable of chunks (a scenario's ``ScriptedMic``), paced like a file unless
    ``fast``. ``keep_mic_open``: after a file ends, silence until the run is stopped."""

    camera: str | None
    mic: str | Iterable[AudioChunk]
    fast: bool = False
    audio_out: str | None = None
    silent: bool = False
    keep_mic_open: bool = False
    loop_video: bool = True
    photos_dir: Path = Path("glasses-photos")


def _fan_out(watchers: Sequence[Watcher]) -> Watcher:
    def tell(event: RuntimeEvent) -> None:
        for watcher in watchers:
            try:
                watcher(event)
            except Exception:  # one watcher failing must not starve the others
                logger.exception("a watcher failed on %s", type(event).__name__)

    return tell


@dataclass(eq=False)
class Simulation:
    """A built simulation (see the module docstring): ``await run()``; the other methods
    from any thread."""

    runtime: Runtime
    mic: Iterable[AudioChunk]
    control: MicControl
    link: NetLink | None
    photos_dir: Path
    notice: Callable[[str], None]
    photos: list[Path] = field(default_factory=list)
    _loop: asyncio.AbstractEventLoop | None = None

    async def run(self) -> list[TurnResult]:
        self._loop = asyncio.get_running_loop()
        if self.link is not None:
            await self.link.start()
        try:
            return await self.runtime.run()
        finally:
            if self.link is not None:
                await self.link.aclose()

    def _on_loop(self, action: Callable[[], None]) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(action)

    def later(self, delay_s: float, action: Callable[[], None]) -> None:
        """Do ``action`` on the run's event loop ``delay_s`` from now (from any thread)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.call_later, delay_s, action)

    @property
    def led_on(self) -> bool:
        """The capture LED: the privacy switch itself (off with no camera)."""
        eyes = self.runtime.eyes
        return eyes is not None and eyes.led_on

    def camera_view(self) -> tuple[npt.NDArray[np.uint8] | None, Perception | None]:
        """What the glasses last looked at: the frame perception ran on and what it found
        (its overlays belong to it); (None, None) while the LED is off (nothing is kept)
        or before the first look."""
        eyes = self.runtime.eyes
        if eyes is None or not eyes.led_on:
            return None, None
        latest = eyes.latest()
        if latest is None:
            return None, None
        perception, frame = latest
        return frame.image_bgr, perception

    def newest_frame(self) -> npt.NDArray[np.uint8] | None:
        """The newest frame the capture kept; None while the LED is off (none is kept)."""
        eyes = self.runtime.eyes
        if eyes is None or not eyes.led_on:
            return None
        frames = eyes.capture.recent()
        return frames[-1].image_bgr if frames else None

    def press(self, button: str) -> None:
        """``tap``, ``privacy``, ``photo``, ``mute``, ``unmute`` (a scenario's buttons)."""
        if button in ("tap", "privacy"):
            self.runtime.press(button)
        elif button == "photo":
            self.take_photo()
        elif button in ("mute", "unmute"):
            self.control.set_muted(button == "mute")

    def take_photo(self) -> Path | None:
        """The newest camera frame as a JPEG in ``photos_dir``, only while the LED is on."""
        import cv2

        frame = self.newest_frame()
        if frame is None:
            self.notice("no photo: the camera is off" if self.runtime.eyes is not None
                        else "no photo: these glasses run without a camera")
            return None
        self.photos_dir.mkdir(parents=True, exist_ok=True)
        path = self.photos_dir / f"photo-{time.strftime('%Y%m%d-%H%M%S')}-{len(self.photos)}.jpg"
        if not cv2.imwrite(str(path), frame):
            self.notice(f"could not write the photo {path}")
            return None
        self.photos.append(path)
        self.notice(f"photo saved: {path}")
        return path

    def set_network(self, up: bool) -> None:
        """Cut or restore the link to the gateway (from any thread)."""
        link = self.link
        if link is None:
            self.notice("no network to cut: these glasses run offline")
            return
        self._on_loop(link.restore if up else link.cut)

    def stop(self) -> None:
        """End the run soon (the window's quit key, Ctrl-C, a scenario's timeout); nothing
        when it has ended."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed just now
                self.runtime.stop()
        stop_mic = getattr(self.mic, "stop", None)
        if callable(stop_mic):
            stop_mic()


def _relay(cloud: CloudTarget | None, notice: Callable[[str], None]
           ) -> tuple[CloudTarget | None, NetLink | None]:
    if cloud is None:
        return None, None
    if not cloud.url.startswith("ws://"):
        notice(f"the network cannot be cut on {cloud.url.split('://')[0]}:// (the relay "
               "would break TLS host checks); the link runs direct")
        return cloud, None
    link = NetLink.to(cloud.url)
    return dataclasses.replace(cloud, url=link.url), link


def build_simulation(
    config: Config,
    inputs: SimulationInputs,
    *,
    cloud: CloudTarget | None,
    options: RuntimeOptions,
    watchers: Sequence[Watcher] = (),
    tap: Tap | None = None,
    control: MicControl | None = None,
    notice: Callable[[str], None] | None = None,
    asr: WhisperAsr | None = None,
) -> Simulation:
    """The simulation for ``inputs`` (see the module docstring); ``cloud`` None: offline;
    ``tap``: a field-log recorder (``simulate --record``), or None.
    Loads the models (``asr``: a speech recogniser already loaded); a missing camera,
    microphone or file is a ``GlassesError`` here."""
    say = notice or (lambda text: logger.warning("%s", text))
    control = control or MicControl()
    clock = MonotonicClock()
    if isinstance(inputs.mic, str):
        chunks, live = open_mic(inputs.mic, config, clock=clock)
        mic: Iterable[AudioChunk] = LiveMic(chunks, control=control,
                                            keep_open=inputs.keep_mic_open and not live)
    else:
        mic, live = inputs.mic, False
    relayed, link = _relay(cloud, say)
    runtime = build_runtime(
        config,
        Inputs(camera=inputs.camera, mic="", audio_out=inputs.audio_out, fast=inputs.fast,
               silent=inputs.silent, mic_source=mic, mic_live=live),
        cloud=relayed, options=options, on_event=_fan_out(watchers), clock=clock, tap=tap,
        notice=say, asr=asr)
    if runtime.eyes is not None and inputs.loop_video:
        runtime.eyes.capture.loop = True  # a video plays on, as a camera would
    return Simulation(runtime=runtime, mic=mic, control=control, link=link,
                      photos_dir=inputs.photos_dir, notice=say)
