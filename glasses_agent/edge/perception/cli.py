"""``glasses-agent look PATH [--json]``: what the glasses see in an image or a video.

For a video, a few frames spread over it are read and the sharpest is
perceived (the keyframe). A missing or unreadable file is a one-line error
(exit 2) before any model is loaded.
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

from glasses_agent.config import Config
from glasses_agent.errors import BadInputError
from glasses_agent.frames import Perception, VideoFrame

__all__ = ["STILL_MAX_SIDE_PX", "look", "register", "run"]

# A photo larger than this (longest side, pixels) is scaled down before the models
# see it: OCR's detector works at under 1,000 px anyway, and face detection at full
# resolution took 7 s on a 12-megapixel photo. Boxes are in the scaled image's pixels.
STILL_MAX_SIDE_PX = 1920


def _sample_video(path: Path, frames: int, config: Config) -> tuple[list[VideoFrame], int]:
    """Up to ``frames`` frames spread evenly over the video, and its frame count."""
    from glasses_agent.edge.sources.camera import VideoFileReader, iter_frames

    reader = VideoFileReader(path, width=config.camera.width, height=config.camera.height)
    try:
        step = max(1, reader.frame_count // max(1, frames))
        sampled = list(itertools.islice(iter_frames(reader, step=step), frames))
    finally:
        reader.close()
    if not sampled:
        raise BadInputError(f"cannot read {path}: the video has no frames")
    return sampled, reader.frame_count


def _load(path: Path, frames: int, config: Config) -> tuple[VideoFrame, dict[str, Any]]:
    """The frame to perceive and what to say about where it came from."""
    from glasses_agent.edge.perception.keyframe import choose_keyframe, sharpness
    from glasses_agent.edge.sources.camera import IMAGE_SUFFIXES, fit_within, read_image

    if not path.exists():
        raise BadInputError(f"file not found: {path}")
    if path.is_dir():
        raise BadInputError(f"{path} is a folder: look takes an image or a video file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        image = read_image(path)
        scaled = fit_within(image, STILL_MAX_SIDE_PX, STILL_MAX_SIDE_PX)
        frame = VideoFrame(timestamp_s=0.0, image_bgr=scaled, index=0, source=str(path))
        origin: dict[str, Any] = {"kind": "image"}
        if scaled.shape != image.shape:
            origin["original_size_px"] = [int(image.shape[1]), int(image.shape[0])]
        return frame, origin
    sampled, count = _sample_video(path, frames, config)
    chosen = choose_keyframe(sampled)
    assert chosen is not None
    return chosen, {
        "kind": "video",
        "frame_count": count,
        "keyframe": {"index": chosen.index, "timestamp_s": round(chosen.timestamp_s, 3),
                     "sharpness": round(sharpness(chosen.image_bgr), 1),
                     "frames_considered": len(sampled)},
    }


def look(path: str | Path, config: Config, *, frames: int = 12) -> dict[str, Any]:
    """What the glasses see in the image or video at ``path``, as plain data."""
    from glasses_agent.edge.perception.loop import Perceiver
    from glasses_agent.edge.perception.recognition import NOT_SURE, in_view
    from glasses_agent.edge.perception.text import find_prices, find_times

    if config.perception.privacy:
        raise BadInputError("the privacy switch is on ([perception] privacy = true): "
                            "the camera path is off and nothing is perceived")
    file = Path(path).expanduser()
    frame, origin = _load(file, frames, config)
    start = time.perf_counter()
    perceiver = Perceiver.from_config(config)
    load_ms = round((time.perf_counter() - start) * 1000.0, 1)
    perception: Perception = perceiver.perceive(frame)
    best = in_view(perception.labels, perception.center_labels,
                   min_label_score=config.router.confident_label_score)
    return {
        "path": str(file),
        **origin,
        "size_px": list(frame.size_px),
        "in_view": NOT_SURE if best is None else best.name,
        "in_view_score": None if best is None else best.score,
        "labels": [{"name": label.name, "score": label.score} for label in perception.labels],
        "center_labels": [{"name": label.name, "score": label.score}
                          for label in perception.center_labels],
        "text": [{"text": line.text, "score": line.score, "box": list(line.box)}
                 for line in perception.text],
        "prices": find_prices(perception.text),
        "times": find_times(perception.text),
        "faces": [list(box) for box in perception.faces],
        "barcodes": [{"type": code.type, "data": code.data, "box": list(code.box)}
                     for code in perception.barcodes],
        "timings_ms": dict(perception.timings_ms),
        "load_ms": load_ms,
    }


def _print_text(result: dict[str, Any]) -> None:
    kind = result["kind"]
    where = ""
    if kind == "video":
        key = result["keyframe"]
        where = (f", keyframe {key['index']} at {key['timestamp_s']:.2f} s "
                 f"(sharpest of {key['frames_considered']})")
    width, height = result["size_px"]
    print(f"{result['path']}: {kind} {width}x{height}{where}")
    score = result["in_view_score"]
    print(f"In view:  {result['in_view']}" + (f" ({score:.2f})" if score is not None else ""))
    for title, key in (("Centre", "center_labels"), ("Frame", "labels")):
        labels = ", ".join(f"{item['name']} {item['score']:.2f}" for item in result[key][:3])
        print(f"{title + ':':<9} {labels or '-'}")
    if result["text"]:
        print("Text:")
        for line in result["text"]:
            print(f"  {line['text']}  ({line['score']:.2f})")
    else:
        print("Text:     -")
    codes = ", ".join(f"{c['type']} {c['data']}" for c in result["barcodes"])
    print(f"Codes:    {codes or '-'}")
    print(f"Faces:    {len(result['faces'])}")
    timings = ", ".join(f"{name} {ms:.0f} ms" for name, ms in result["timings_ms"].items())
    print(f"Timings:  {timings} (models loaded in {result['load_ms']:.0f} ms)")


def run(args: argparse.Namespace, config: Config) -> int:
    if args.frames < 1:
        raise BadInputError(f"--frames must be at least 1, got {args.frames}")
    result = look(args.path, config, frames=args.frames)
    if args.json:
        print(json.dumps(result))
    else:
        _print_text(result)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "look", help="print what the glasses see in an image or a video",
        description="Recognition (whole frame and centre), text, faces and barcodes in an "
                    "image, or in the sharpest of a few frames of a video.",
    )
    parser.add_argument("path", help="an image (jpg, png, ...) or a video file")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--frames", type=int, default=12, metavar="N",
                        help="for a video: how many frames to consider for the keyframe "
                             "(default 12)")
    parser.set_defaults(func=run)
