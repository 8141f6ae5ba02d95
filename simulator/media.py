"""A scenario's media, made when it runs: the camera's image or video, the wearer's speech.

``camera_source`` writes what ``[camera]`` describes into a work folder (a PNG for
one view, an MJPG video for several scenes) and returns the path the glasses'
camera opens; a ``file`` is used as it is. ``speech`` gives each utterance's audio
at 16 kHz (``simulator.voices`` or a WAV file, resampled).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

from edge_models.opencv import cv2 as _cv2
from simulator.scenario import CameraSpec, Say

__all__ = ["VIDEO_FPS", "camera_source", "render_view", "speech"]

UInt8Array = npt.NDArray[np.uint8]
# Scenes become a video at this rate (the glasses' camera reads 5 frames a second).
VIDEO_FPS = 10.0


def render_view(spec: CameraSpec) -> UInt8Array:
    """One view as BGR uint8: a photo, or a sign, tag or code photographed over one."""
    from edge_models.photos import photo
    from edge_models.signs import render_sign
    from glasses_agent.edge.sources.camera import read_image
    from simulator.render import photograph, render_ean13, render_qr

    if spec.kind == "photo":
        return photo(str(spec.value))
    if spec.kind == "file":
        return read_image(str(spec.value))
    if spec.kind in ("sign", "price_tag"):
        lines = (spec.value,) if isinstance(spec.value, str) else spec.value
        image: UInt8Array = render_sign(tuple(lines), seed=spec.seed,
                                        background=photo(spec.background),
                                        tilt=0.12, blur_px=0.8, noise=4.0)
        return image
    item = render_ean13(str(spec.value), module_px=3) if spec.kind == "barcode" else \
        render_qr(str(spec.value), module_px=5)
    return photograph(item, background=spec.background, at=(60, 90), strength=0.05,
                      blur_px=1.0, seed=spec.seed)


def camera_source(spec: CameraSpec, workdir: Path) -> str | None:
    """The camera source for ``spec`` (None: no camera), written under ``workdir``."""
    cv2 = _cv2()
    if spec.none:
        return None
    if not spec.scenes:
        if spec.kind == "file":
            return str(spec.value)
        path = workdir / "view.png"
        if not cv2.imwrite(str(path), render_view(spec)):
            raise OSError(f"cannot write {path}")
        return str(path)
    from simulator.render import write_video

    frames: list[UInt8Array] = []
    size: tuple[int, int] | None = None
    for scene in spec.scenes:
        view = render_view(scene)
        if size is None:
            size = (view.shape[1], view.shape[0])
        view = cv2.resize(view, size, interpolation=cv2.INTER_AREA)
        frames += [view] * max(1, round(scene.seconds * VIDEO_FPS))
    return str(write_video(workdir / "scenes.avi", frames, fps=VIDEO_FPS))


def speech(say: Say) -> npt.NDArray[np.float32]:
    """The utterance's audio, 16 kHz mono float32."""
    if say.wav is not None:
        from glasses_agent.edge.sources.audio import read_audio_file

        return np.asarray(read_audio_file(say.wav), dtype=np.float32)
    from simulator.voices import synthesize

    return synthesize(say.text, say.voice, speed_wpm=say.speed_wpm)
