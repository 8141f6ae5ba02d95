"""Camera sources: video file, image, folder, a missing webcam, latest-frame-wins capture."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from support.images import photo, write_video

from glasses_agent.clock import ManualClock
from glasses_agent.edge.sources.camera import (
    CameraCapture,
    FolderReader,
    ImageReader,
    Mailbox,
    PrivacySwitch,
    VideoFileReader,
    WebcamReader,
    fit_within,
    iter_frames,
    open_camera,
)
from glasses_agent.errors import BadInputError, DeviceUnavailableError


def _numbered_frames(count: int, size: tuple[int, int] = (320, 240)) -> list[np.ndarray]:
    """Frames of a real photo whose mean brightness encodes the frame number."""
    base = cv2.resize(photo("chelsea"), size, interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(count):
        frame = base.copy()
        frame[:24, :] = (i * 7) % 256  # a band whose value names the frame
        frames.append(frame)
    return frames


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("camera") / "walk.avi"
    return write_video(path, _numbered_frames(30, (320, 240)), fps=30.0)


def _band(frame: np.ndarray) -> int:
    rows = frame.shape[0] // 20  # well inside the band (the top tenth), at any scale
    return int(round(float(frame[1:rows, :].mean())))


def test_video_file_frames_in_order_with_media_timestamps(video: Path) -> None:
    reader = open_camera(str(video), width=160, height=160)
    assert isinstance(reader, VideoFileReader)
    assert reader.fps == pytest.approx(30.0)
    frames = list(iter_frames(reader))
    reader.close()
    assert len(frames) == 30
    assert [f.index for f in frames] == list(range(30))
    assert frames[10].timestamp_s == pytest.approx(10 / 30)
    # Scaled down to fit 160x160, keeping the 4:3 aspect.
    assert frames[0].size_px == (160, 120)
    # MJPG is lossy, but the numbered band survives: every frame came, in order.
    assert [abs(_band(f.image_bgr) - (i * 7) % 256) <= 3 for i, f in enumerate(frames)] == \
        [True] * 30


def test_every_nth_frame_is_kept_without_decoding_the_rest(video: Path) -> None:
    frames = list(iter_frames(open_camera(str(video)), step=10))
    assert [f.index for f in frames] == [0, 10, 20]
    assert abs(_band(frames[2].image_bgr) - 140) <= 3


def test_image_and_folder_sources(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "b.png"), photo("coffee"))
    cv2.imwrite(str(tmp_path / "a.jpg"), photo("chelsea"))
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "notes.txt").write_text("ignored")

    image = open_camera(str(tmp_path / "b.png"), width=0, height=0)
    assert isinstance(image, ImageReader)
    (only,) = list(iter_frames(image))
    assert only.image_bgr.shape == photo("coffee").shape

    folder = open_camera(str(tmp_path), width=200, height=200)
    assert isinstance(folder, FolderReader)
    frames = list(iter_frames(folder, fps=4.0))
    # Name order (a.jpg: chelsea, then b.png: coffee); the broken c.jpg is skipped, counted.
    assert len(frames) == 2 and folder.unreadable == 1
    assert frames[0].size_px == (200, 133) and frames[1].size_px == (200, 133)
    assert frames[1].timestamp_s == pytest.approx(0.25)
    assert frames[0].source == str(tmp_path)


def test_bad_sources_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="file not found"):
        open_camera(str(tmp_path / "nope.avi"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadInputError, match="no images in"):
        open_camera(str(tmp_path / "empty"))
    corrupt = tmp_path / "corrupt.avi"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4000))
    with pytest.raises(BadInputError, match="not a video"):
        open_camera(str(corrupt))
    truncated = tmp_path / "truncated.png"
    ok, png = cv2.imencode(".png", photo("coffee"))
    truncated.write_bytes(png.tobytes()[:5000])
    with pytest.raises(BadInputError, match="corrupt or truncated"):
        open_camera(str(truncated))


def test_missing_webcam_names_the_index_and_what_to_do() -> None:
    with pytest.raises(DeviceUnavailableError) as info:
        WebcamReader(57)
    message = str(info.value)
    assert "57" in message and "glasses-agent devices" in message and "folder" in message
    with pytest.raises(DeviceUnavailableError, match="57"):
        open_camera("57")


def test_fit_within_never_upscales() -> None:
    image = np.zeros((100, 50, 3), np.uint8)
    assert fit_within(image, 640, 480) is image
    assert fit_within(image, 25, 0).shape == (50, 25, 3)


def test_mailbox_keeps_only_the_newest() -> None:
    box: Mailbox[int] = Mailbox()
    for i in range(5):
        box.put(i)
    assert box.depth == 1 and box.max_depth == 1 and box.dropped == 4
    assert box.take(0) == 4
    assert box.take(0.01) is None
    box.close()
    assert box.take(None) is None  # closed: no waiting


def test_latest_frame_wins_with_a_slow_consumer(video: Path) -> None:
    clock = ManualClock(100.0)
    capture = CameraCapture(lambda: VideoFileReader(video), clock=clock, fps=200.0,
                            realtime=False, loop=True, ring_size=4)
    taken = []
    with capture:
        for _ in range(6):
            frame = capture.latest(timeout_s=2.0)
            assert frame is not None
            taken.append(frame)
            time.sleep(0.05)  # a slow model
        stats = capture.stats()
        recent = capture.recent()
    # The consumer got the newest frame each time, far apart; the rest were dropped, not queued.
    indexes = [f.index for f in taken]
    assert indexes == sorted(indexes) and min(np.diff(indexes)) > 1
    assert stats.max_mailbox_depth == 1
    assert stats.delivered == 6
    assert stats.dropped >= stats.captured - stats.delivered - 1 > 0
    assert stats.captured > 3 * stats.delivered
    assert len(recent) == 4 and stats.max_ring_frames == 4
    assert [f.index for f in recent] == list(range(recent[0].index, recent[0].index + 4))
    # Frames are stamped by the injected clock, not by reading the system time.
    assert {f.timestamp_s for f in taken} == {100.0}


def test_realtime_capture_plays_a_video_at_its_own_rate(video: Path) -> None:
    capture = CameraCapture(lambda: VideoFileReader(video), fps=10.0, realtime=True)
    with capture:
        frames = []
        while (frame := capture.latest(timeout_s=3.0)) is not None:
            frames.append(frame)
        stats = capture.stats()
    # 30 frames at 30 fps, sampled at 10 fps: about every third frame, about 10 of them.
    assert stats.finished
    assert 6 <= len(frames) <= 12
    gaps = np.diff([f.index for f in frames])
    assert gaps.min() >= 1 and np.median(gaps) == pytest.approx(1.0)
    bands = [_band(f.image_bgr) for f in frames]
    assert np.median(np.diff(bands)) == pytest.approx(21, abs=8)  # 3 media frames apart


def test_capture_error_surfaces_to_the_consumer() -> None:
    def open_missing() -> WebcamReader:
        return WebcamReader(57)

    capture = CameraCapture(open_missing)
    with pytest.raises(DeviceUnavailableError, match="57"):
        capture.start()


def test_privacy_switch_turns_the_camera_path_off(video: Path) -> None:
    opened = []

    def open_reader() -> VideoFileReader:
        opened.append(1)
        return VideoFileReader(video)

    privacy = PrivacySwitch(on=True)
    capture = CameraCapture(open_reader, fps=100.0, realtime=False, loop=True, privacy=privacy)
    with capture:
        assert capture.latest(timeout_s=0.3) is None
        assert capture.stats().captured == 0 and not opened  # nothing opened, nothing read
        privacy.set(False)
        assert capture.latest(timeout_s=2.0) is not None
        assert opened == [1]
        privacy.toggle()
        assert privacy.on
        time.sleep(0.1)
        frozen = capture.stats().captured
        time.sleep(0.2)
        assert capture.stats().captured == frozen
        assert capture.recent() == [] and capture.mailbox.depth == 0
        assert capture.latest(timeout_s=0.1) is None


def test_capture_stops_promptly_from_another_thread(video: Path) -> None:
    capture = CameraCapture(lambda: VideoFileReader(video), fps=1.0, loop=True).start()
    assert capture.latest(timeout_s=2.0) is not None
    stopper = threading.Timer(0.1, capture.stop)
    stopper.start()
    assert capture.latest(timeout_s=5.0) is None  # woken by stop, not by the 1 s tick
    stopper.join()


def test_capture_from_config_uses_source_rate_and_size(tmp_path: Path) -> None:
    from glasses_agent.config import load_config

    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), photo("coffee"))
    config = load_config(environ={}, overrides=[f"camera.source={tmp_path}", "camera.fps=50",
                                                "camera.width=300", "camera.height=300"])
    capture = CameraCapture.from_config(config.camera, clock=ManualClock(3.0))
    assert capture.fps == 50.0
    with capture:
        frames = []
        while (frame := capture.latest(timeout_s=2.0)) is not None:
            frames.append(frame)
    assert capture.finished and 1 <= len(frames) <= 3
    assert frames[-1].size_px == (300, 200) and frames[-1].timestamp_s == 3.0
