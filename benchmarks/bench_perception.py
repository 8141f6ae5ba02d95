"""The perception loop on a live-paced video stream: drops, lag, and no queue growth.

    .venv/bin/python benchmarks/bench_perception.py [--seconds 60] [--fps 30]

A video is made first (a camera panning and swaying over a table of real
photos, a menu board with prices and a QR code; MJPG in a temp folder). Then:

- baseline: the same per-frame work (``Perceiver.perceive``: recognition on
  the frame and its centre, OCR, faces, barcodes) called directly on frames
  read beforehand, with no capture thread: the models' own pace. Half of it
  runs before the loop and half after, so a change in a shared machine's load
  shows in both;
- loop: ``CameraCapture`` plays the video in real time at its rate (the capture
  thread is the camera) and ``PerceptionLoop`` perceives the newest frame
  whenever the models are free.

Prints one JSON object: frames captured, processed and dropped, lag from
capture to result (p50/p95/max), per-frame work in both runs and their ratio,
the deepest any mailbox got, and memory growth.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from edge_models.photos import photo
from glasses_agent.clock import MonotonicClock
from glasses_agent.config import Config
from glasses_agent.edge.perception.loop import Perceiver, PerceptionLoop, percentile_ms
from glasses_agent.edge.sources.camera import CameraCapture, VideoFileReader, iter_frames
from glasses_agent.frames import Perception, VideoFrame


def _menu_board() -> np.ndarray:
    board = np.full((300, 540, 3), (235, 240, 245), np.uint8)
    for i, line in enumerate(["OPEN 9:30 - 17:45", "Espresso $3.49", "Latte $4.25",
                              "Croissant $2.10"]):
        cv2.putText(board, line, (18, 60 + 62 * i), cv2.FONT_HERSHEY_DUPLEX, 1.15,
                    (30, 30, 30), 2, cv2.LINE_AA)
    qr = cv2.QRCodeEncoder.create().encode("https://example.org/menu")
    qr = cv2.resize(cv2.copyMakeBorder(qr, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=255),
                    None, fx=4, fy=4, interpolation=cv2.INTER_NEAREST)
    board[300 - qr.shape[0] - 6:300 - 6, 540 - qr.shape[1] - 6:540 - 6] = qr[:, :, None]
    return board


def _table() -> np.ndarray:
    """A 1800x900 canvas: the photos and the menu board, side by side."""
    canvas = np.full((900, 1800, 3), (70, 90, 110), np.uint8)
    for name, (x, y), width in (("coffee", (30, 40), 520), ("chelsea", (600, 420), 480),
                                ("astronaut", (1120, 60), 380), ("grace_hopper", (30, 470), 330)):
        image = photo(name)
        image = cv2.resize(image, (width, round(image.shape[0] * width / image.shape[1])),
                           interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
        canvas[y:y + h, x:x + w] = image[:min(h, 900 - y), :min(w, 1800 - x)]
    board = _menu_board()
    canvas[40:340, 580:1120] = board
    canvas[540:840, 1220:1760] = board
    return canvas


def make_video(path: Path, *, seconds: float, fps: float, width: int, height: int) -> int:
    """A camera panning over the table, swaying and zooming a little; returns frame count."""
    table = _table()
    frames = int(round(seconds * fps))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        raise SystemExit(f"cannot write {path}")
    for i in range(frames):
        t = i / fps
        phase = (t / 20.0) % 1.0  # one sweep across the table every 20 s, there and back
        pan = 2 * phase if phase < 0.5 else 2 * (1 - phase)
        zoom = 1.0 + 0.15 * np.sin(2 * np.pi * t / 7.0)
        cw, ch = int(900 / zoom), int(675 / zoom)
        x = int(pan * (1800 - cw))
        y = int((900 - ch) / 2 + 0.4 * (900 - ch) / 2 * np.sin(2 * np.pi * t / 5.0))
        view = cv2.resize(table[y:y + ch, x:x + cw], (width, height),
                          interpolation=cv2.INTER_AREA)
        writer.write(view)
    writer.release()
    return frames


def sample_frames(path: Path, frames: int) -> list[VideoFrame]:
    """``frames`` frames spread evenly over the video, decoded up front."""
    reader = VideoFileReader(path)
    step = max(1, reader.frame_count // frames)
    sample = list(itertools.islice(iter_frames(reader, step=step), frames))
    reader.close()
    return sample


def direct_work_s(perceiver: Perceiver, frames: list[VideoFrame]) -> list[float]:
    """The per-frame work alone: frames perceived one after another, no capture thread."""
    work_s = []
    for frame in frames:
        start = time.perf_counter()
        perceiver.perceive(frame)
        work_s.append(time.perf_counter() - start)
    return work_s


def _summary(work_s: list[float]) -> dict[str, float]:
    return {
        "frames": len(work_s),
        "work_ms_p50": percentile_ms(work_s, 50),
        "work_ms_p95": percentile_ms(work_s, 95),
        "frames_per_s": round(len(work_s) / sum(work_s), 2),
    }


def _rss_mb() -> float:
    import psutil

    return round(psutil.Process().memory_info().rss / 2**20, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="stream length (60)")
    parser.add_argument("--fps", type=float, default=30.0, help="camera rate (30)")
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--baseline-frames", type=int, default=30)
    args = parser.parse_args(argv)

    config = Config()
    perceiver = Perceiver.from_config(config)
    with tempfile.TemporaryDirectory(prefix="bench_perception_") as tmp:
        path = Path(tmp) / "stream.avi"
        start = time.perf_counter()
        total = make_video(path, seconds=args.seconds, fps=args.fps, width=args.width,
                           height=args.height)
        make_s = time.perf_counter() - start
        warm = next(iter_frames(VideoFileReader(path)))
        perceiver.perceive(warm)  # first-run allocations out of the way

        # The baseline runs half before and half after the loop (every other frame of
        # the sample each time), so a change in the machine's load shows up in both.
        sample = sample_frames(path, args.baseline_frames)
        before_s = direct_work_s(perceiver, sample[0::2])

        rss_before = _rss_mb()
        clock = MonotonicClock()
        capture = CameraCapture(lambda: VideoFileReader(path), clock=clock, fps=args.fps)
        rss_samples: list[float] = []

        def sample_memory(perception: Perception, frame: VideoFrame) -> None:
            if len(rss_samples) < 10_000:
                rss_samples.append(_rss_mb())

        loop = PerceptionLoop(capture, perceiver, on_perception=sample_memory)
        start = time.perf_counter()
        with capture:
            stats = loop.run()
        wall_s = time.perf_counter() - start
        cap = capture.stats()
        rss_after = _rss_mb()
        after_s = direct_work_s(perceiver, sample[1::2])
    base = {**_summary(before_s + after_s), "before": _summary(before_s),
            "after": _summary(after_s)}
    half = len(rss_samples) // 2
    result = {
        "benchmark": "perception_loop",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared)",
        "models": perceiver.models,
        "stream": {"seconds": args.seconds, "fps": args.fps, "frames": total,
                   "size_px": [args.width, args.height], "made_in_s": round(make_s, 1)},
        "loop": {
            "wall_s": round(wall_s, 2),
            "captured": cap.captured,
            "capture_fps": round(cap.captured / wall_s, 2),
            "processed": stats.processed,
            "processed_fps": round(stats.processed / wall_s, 2),
            "dropped": cap.dropped,
            "skipped_by_capture": cap.skipped,
            "drop_fraction": round(cap.dropped / max(1, cap.captured), 3),
            "lag_ms_p50": stats.lag_ms_p50,
            "lag_ms_p95": stats.lag_ms_p95,
            "lag_ms_max": stats.lag_ms_max,
            "work_ms_p50": stats.work_ms_p50,
            "work_ms_p95": stats.work_ms_p95,
            "max_mailbox_depth": cap.max_mailbox_depth,
            "max_results_depth": stats.max_results_depth,
            "max_ring_frames": cap.max_ring_frames,
            "rss_mb_before": rss_before,
            "rss_mb_first_half_median": statistics.median(rss_samples[:half]) if half else None,
            "rss_mb_second_half_median": statistics.median(rss_samples[half:]) if half else None,
            "rss_mb_after": rss_after,
        },
        "baseline_direct": base,
        "ratios": {
            # Per-frame work inside the loop vs. alone: the capture thread's cost.
            "loop_work_vs_direct_p50": round(stats.work_ms_p50 / base["work_ms_p50"], 3),
            # Frames perceived per second in the loop vs. back-to-back direct calls.
            "loop_throughput_vs_direct": round(stats.processed / wall_s / base["frames_per_s"],
                                               3),
            # Lag in units of one frame's direct work: about 1 expected, as the loop takes
            # the newest frame (at most one capture period old) whenever it is free.
            "lag_p50_vs_direct_work_p50": round(stats.lag_ms_p50 / base["work_ms_p50"], 3),
        },
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
