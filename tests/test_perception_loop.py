"""The perception loop on a real video through the real models: latest frame wins."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.images import blur, paste, perceiver, photo, render_qr, write_video

from glasses_agent.clock import ManualClock, MonotonicClock
from glasses_agent.edge.perception.loop import PerceptionLoop, percentile_ms
from glasses_agent.edge.sources.camera import CameraCapture, PrivacySwitch, VideoFileReader
from glasses_agent.frames import Perception, VideoFrame


def _scene(i: int) -> np.ndarray:
    """A slow pan over a cup of coffee with a QR code on the table."""
    base = paste(cv2.resize(photo("coffee"), (720, 480)), render_qr("table 12", module_px=4),
                 520, 300)
    x = 40 + (i % 60)
    return np.ascontiguousarray(base[:, x:x + 640])


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("loop") / "pan.avi"
    return write_video(path, [_scene(i) for i in range(60)], fps=30.0)


def test_loop_keeps_up_by_dropping_frames_not_by_queueing(video: Path) -> None:
    seen: list[tuple[Perception, VideoFrame]] = []
    capture = CameraCapture(lambda: VideoFileReader(video), clock=MonotonicClock(), fps=30.0)
    loop = PerceptionLoop(capture, perceiver(), on_perception=lambda p, f: seen.append((p, f)))
    with capture:
        stats = loop.run()
    cap = capture.stats()
    assert cap.finished and stats.processed == len(seen) >= 2
    # Every captured frame was taken or dropped; the mailboxes never held more than one.
    assert cap.captured == cap.delivered + cap.dropped + cap.mailbox_depth
    assert cap.dropped > 0 and cap.max_mailbox_depth == 1 and stats.max_results_depth == 1
    assert cap.max_ring_frames <= 8
    # Results come from ever newer frames, each about what the camera showed.
    indexes = [frame.index for _, frame in seen]
    assert indexes == sorted(indexes) and len(set(indexes)) == len(indexes)
    for result, frame in seen:
        assert result.timestamp_s == frame.timestamp_s
        assert result.labels and result.labels[0].name in {"espresso", "cup", "coffee mug"}
        assert [c.data for c in result.barcodes] == ["table 12"]
    assert 0 < stats.lag_ms_p50 <= stats.lag_ms_p95 <= stats.lag_ms_max
    assert stats.work_ms_p50 > 0
    assert loop.results.take(0) is seen[-1][0]


def test_privacy_switch_stops_perception_and_forgets(video: Path) -> None:
    privacy = PrivacySwitch()
    capture = CameraCapture(lambda: VideoFileReader(video), fps=30.0, loop=True,
                            privacy=privacy)
    loop = PerceptionLoop(capture, perceiver())
    with capture:
        loop.start()
        deadline = time.monotonic() + 20
        while loop.processed < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loop.processed >= 1
        privacy.set(True)
        time.sleep(1.0)  # longer than one frame's work: anything in flight is finished
        done = loop.processed
        time.sleep(0.6)
        assert loop.processed == done
        assert loop.results.depth == 0 and capture.recent() == []
        assert loop.keyframe(now_s=capture.clock.now_s()) is None
        privacy.set(False)
        deadline = time.monotonic() + 20
        while loop.processed == done and time.monotonic() < deadline:
            time.sleep(0.05)
        assert loop.processed > done
        loop.stop()


def test_the_keyframe_is_the_sharpest_recent_frame(tmp_path: Path) -> None:
    frames = [blur(_scene(i), 2.5) if i != 5 else _scene(i) for i in range(8)]
    path = write_video(tmp_path / "shaky.avi", frames, fps=30.0)
    clock = ManualClock(50.0)
    capture = CameraCapture(lambda: VideoFileReader(path), clock=clock, fps=30.0,
                            realtime=False, ring_size=8)
    loop = PerceptionLoop(capture, perceiver())
    with capture:
        while not capture.finished:
            time.sleep(0.01)
    chosen = loop.keyframe(now_s=clock.now_s())
    assert chosen is not None and chosen.index == 5
    assert [f.index for f in capture.recent()] == list(range(8))


def test_the_loop_stops_from_another_thread(video: Path) -> None:
    capture = CameraCapture(lambda: VideoFileReader(video), fps=5.0, loop=True)
    loop = PerceptionLoop(capture, perceiver(), min_interval_s=0.2)
    with capture:
        timer = threading.Timer(0.5, loop.stop)
        timer.start()
        stats = loop.run(duration_s=30.0)
        timer.join()
    assert stats.processed <= 5


def test_percentiles() -> None:
    assert percentile_ms([], 50) == 0.0
    assert percentile_ms([0.01, 0.02, 0.03], 50) == 20.0
