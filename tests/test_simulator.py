"""The desktop simulator: every bundled scenario end to end (real speech, real models, the
embedded gateway), a failing expectation's report, the one OpenCV build, the window under
Xvfb driven by xdotool and read back from a screenshot, and the one-line errors for a
missing camera, microphone and display."""

from __future__ import annotations

import importlib.metadata
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from support.cli import assert_one_line_error, run_agent
from support.images import write_video
from support.speech import compose, speak, write_wav

from edge_models.photos import photo
from edge_models.signs import render_sign
from simulator.cli import bundled_scenarios
from simulator.hud import CAMERA_BOX, HEIGHT, LED_CENTER, LED_OFF, LED_ON, PANEL_X, WIDTH
from simulator.window import TITLE

OPENCV_DISTRIBUTIONS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python",
                        "opencv-contrib-python-headless")

# A turn that cannot hold: the time, asked on the device, must contain words it never has.
FAILING = """
name = "bound to fail"
cloud = false

[[say]]
at_s = 0.3
text = "Hey glasses, what time is it?"

[[expect]]
rule = "time"
contains = ["on Mars"]
"""


# -- scenarios ---------------------------------------------------------------------------------
def test_every_bundled_scenario_passes_and_a_failing_one_is_reported(tmp_path: Path) -> None:
    """One process for all (one Whisper, one gateway): the bundled scenarios and one that
    fails, as a folder: a verdict each, the table, exit 1 naming the failed expectation."""
    bundled = sorted(bundled_scenarios().glob("*.toml"))
    assert len(bundled) >= 8
    for file in bundled:
        shutil.copy(file, tmp_path / file.name)
    (tmp_path / "99_fails.toml").write_text(FAILING, encoding="utf-8")
    proc = run_agent("simulate", "--scenario", str(tmp_path), timeout=900)
    out = proc.stdout
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    table = out[out.rindex("scenario  "):]
    for file in bundled:
        name = _name(file)
        assert f"PASS  {name}:" in out, f"{name} did not pass:\n{out}\n{proc.stderr[-3000:]}"
        assert any(row.startswith(name) and " pass " in row for row in table.splitlines()), table
    assert "FAIL  bound to fail (" in out
    assert "turn 1 ('what time is it?'): the answer does not contain 'on Mars'" in out, out
    assert "answer: \"It's " in out or "answer: 'It's " in out, out
    assert f"{len(bundled) + 1} scenario(s): {len(bundled)} passed, 1 failed" in table


def _name(file: Path) -> str:
    import tomllib

    return str(tomllib.loads(file.read_text(encoding="utf-8")).get("name", file.stem))


def test_a_bad_scenario_file_is_one_line_before_anything_runs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[say]]\nat_s = 1\ntext = "hello"\nvoice = "klingon"\n', encoding="utf-8")
    assert_one_line_error(run_agent("simulate", "--scenario", str(bad)), "glasses-agent",
                          "klingon")
    bad.write_text('[[say]]\nat_s = 1\ntext = "hi"\n[[expect]]\nroute = "moon"\n',
                   encoding="utf-8")
    assert_one_line_error(run_agent("simulate", "--scenario", str(bad)), "glasses-agent",
                          "expect[0].route", "moon")


# -- one OpenCV --------------------------------------------------------------------------------
def test_exactly_one_opencv_build_serves_images_ocr_and_the_window() -> None:
    """opencv-python and opencv-python-headless write the same cv2/ files: only one may be
    installed (rapidocr asks for the headless one; the window is Tk, so that is the one)."""
    installed = []
    for name in OPENCV_DISTRIBUTIONS:
        try:
            installed.append(f"{name} {importlib.metadata.version(name)}")
        except importlib.metadata.PackageNotFoundError:
            pass
    assert len(installed) == 1, f"OpenCV distributions installed: {installed}"
    assert installed[0].startswith("opencv-python-headless "), installed
    import cv2

    assert cv2.__version__.startswith(installed[0].split()[1].rsplit(".", 1)[0]), cv2.__version__
    # What our package and OCR ask for (their extras aside): that one build, nothing else.
    for dist in ("glasses-agent", "rapidocr"):
        asked = {_dist_name(req) for req in importlib.metadata.requires(dist) or []
                 if "extra ==" not in req}
        assert asked & set(OPENCV_DISTRIBUTIONS) == {"opencv-python-headless"}, (dist, asked)


def _dist_name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    return match.group().lower().replace("_", "-").replace(".", "-") if match else ""


# -- the HUD picture ---------------------------------------------------------------------------
def test_the_hud_shows_faces_blurred_as_they_leave_the_glasses() -> None:
    """A real face (the astronaut photo, found by the glasses' detector) is drawn blurred in
    the camera view; the same frame with no face found is drawn sharp."""
    import cv2
    from support.images import face_detector

    from glasses_agent.frames import Perception
    from simulator.hud import HudView, render

    image = photo("astronaut")
    faces = tuple(face[:4] for face in face_detector("haar").detect(image))
    assert faces
    x0, y0, x1, y1 = CAMERA_BOX
    height, width = image.shape[:2]
    scale = min((x1 - x0) / width, (y1 - y0) / height)
    ox, oy = ((x1 - x0) - round(width * scale)) // 2, ((y1 - y0) - round(height * scale)) // 2
    fx0, fy0, fx1, fy1 = (round(v * scale) for v in faces[0])
    inset = (fx1 - fx0) // 6  # inside the box drawn round the face
    fx0, fy0, fx1, fy1 = fx0 + inset, fy0 + inset, fx1 - inset, fy1 - inset

    def sharpness(perception: Perception) -> float:
        picture = render(HudView(led_on=True, perception=perception), image)
        face = picture[y0 + oy + fy0:y0 + oy + fy1, x0 + ox + fx0:x0 + ox + fx1]
        return float(cv2.Laplacian(cv2.cvtColor(face, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())

    blurred = sharpness(Perception(timestamp_s=0.0, faces=faces))
    sharp = sharpness(Perception(timestamp_s=0.0))
    assert blurred < sharp / 4, (blurred, sharp)


# -- the window under Xvfb ---------------------------------------------------------------------
def _need_x() -> None:
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"the window test needs {' and '.join(missing)} (scripts/setup.sh installs "
                    "them: apt-get install xvfb xdotool)")
    try:
        import tkinter  # noqa: F401
    except ImportError:
        pytest.skip("the window test needs Tk (scripts/setup.sh installs python3-tk)")


@pytest.fixture
def display() -> Iterator[str]:
    """A fresh Xvfb server; its display name (":N")."""
    _need_x()
    read, write = os.pipe()
    server = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24",
                               "-nolisten", "tcp"], pass_fds=(write,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    assert number, "Xvfb did not start"
    try:
        yield f":{number}"
    finally:
        server.terminate()
        server.wait(10)


class _Events:
    """The simulator's ``--events -`` lines, read on a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, args=(proc,), daemon=True).start()

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def wait(self, name: str, timeout_s: float, **fields: Any) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while (left_s := deadline - time.monotonic()) > 0:
            try:
                event = self.lines.get(timeout=left_s)
            except queue.Empty:
                break
            self.seen.append(event)
            if event["event"] == name and all(event.get(k) == v for k, v in fields.items()):
                return event
        raise AssertionError(f"no {name} {fields} in {timeout_s:g} s; saw "
                             f"{[e['event'] for e in self.seen]}")


def _xdotool(display: str, *args: str) -> str:
    return subprocess.run(["xdotool", *args], capture_output=True, text=True, check=True,
                          timeout=20, env={**os.environ, "DISPLAY": display}).stdout.strip()


def _window(display: str, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = subprocess.run(["xdotool", "search", "--name", TITLE], capture_output=True,
                               text=True, env={**os.environ, "DISPLAY": display})
        if found.stdout.strip():
            return found.stdout.split()[0]
        time.sleep(0.3)
    raise AssertionError(f"no window named {TITLE!r} in {timeout_s:g} s")


def _screenshot(display: str, path: Path) -> np.ndarray:
    """The window (at 0,0: there is no window manager) as RGB, kept in ``path``."""
    from PIL import ImageGrab

    time.sleep(0.4)  # a few frames: the window redraws 15 times a second
    shot = ImageGrab.grab(bbox=(0, 0, WIDTH, HEIGHT), xdisplay=display)
    shot.save(path)
    return np.asarray(shot.convert("RGB"))


def _read_text(rgb: np.ndarray, box: tuple[int, int, int, int]) -> str:
    from edge_models.ocr import TextReader

    x0, y0, x1, y1 = box
    bgr = np.ascontiguousarray(rgb[y0:y1, x0:x1, ::-1])
    return " ".join(text for text, _, _ in TextReader().read(bgr)).lower()


def _led(rgb: np.ndarray) -> tuple[int, int, int]:
    x, y = LED_CENTER
    return tuple(int(v) for v in rgb[y, x])  # type: ignore[return-value]


def _media(tmp_path: Path) -> tuple[Path, Path]:
    sign = render_sign(("EXIT 12",), seed=3, background=photo("coffee"), tilt=0.1)
    video = write_video(tmp_path / "walk.avi", [sign] * 20, fps=10.0)
    question, _ = compose([1.0, speak("Hey glasses, what time is it?"), 2.0])
    return video, write_wav(tmp_path / "question.wav", question)


def test_the_window_under_xvfb_shows_the_answer_and_the_led_goes_off_with_privacy(
        tmp_path: Path, display: str) -> None:
    """glasses-agent simulate on a video and a recorded question, in a real Tk window: the
    HUD shows the question and its answer, and the battery and location passed; the privacy
    key (xdotool) turns the LED off and empties the camera view; h shows the keys; q quits
    with exit 0."""
    video, question = _media(tmp_path)
    env = {**os.environ, "DISPLAY": display, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "glasses_agent.cli", "simulate",
                             "--camera", str(video), "--mic", str(question), "--offline",
                             "--battery", "42", "--location", "51.5007,-0.1246",
                             "--photos", str(tmp_path / "photos"), "--events", "-"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        events = _Events(proc)
        window = _window(display, 90)
        answered = events.wait("answered", 120)
        assert answered["rule"] == "time", answered
        events.wait("turn_timings", 30)
        shot = _screenshot(display, tmp_path / "answered.png")
        assert _led(shot) == LED_ON[::-1], _led(shot)
        panel = _read_text(shot, (PANEL_X - 8, CAMERA_BOX[1], WIDTH, CAMERA_BOX[3]))
        said = re.sub(r"\D", "", answered["text"])  # "It's 6:52 PM." -> "652"
        assert "time" in panel and said and said in re.sub(r"\D", "", panel), (panel, said)
        camera = _read_text(shot, CAMERA_BOX)
        assert "exit" in camera, camera
        top = _read_text(shot, (0, 0, WIDTH, CAMERA_BOX[1]))
        assert "battery 42%" in top and "51.5007" in top, top

        _xdotool(display, "windowfocus", "--sync", window)
        _xdotool(display, "key", "p")
        events.wait("led_changed", 20, on=False)
        shot = _screenshot(display, tmp_path / "privacy.png")
        assert _led(shot) == LED_OFF[::-1], _led(shot)
        assert "camera off" in _read_text(shot, CAMERA_BOX)

        _xdotool(display, "key", "h")
        shot = _screenshot(display, tmp_path / "help.png")
        keys = _read_text(shot, (0, CAMERA_BOX[1], WIDTH, CAMERA_BOX[3]))
        assert "temple tap" in keys and "privacy switch" in keys, keys

        _xdotool(display, "key", "q")
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    stderr = proc.stderr.read() if proc.stderr is not None else ""
    assert "Traceback" not in stderr, stderr
    # No sound card here: one line says so and what to pass; the answers were still shown.
    if "no sound output device" in stderr:
        assert "pass --audio-out FILE.wav" in stderr, stderr


# -- no camera, no microphone, no display ------------------------------------------------------
def test_no_display_is_one_line_naming_headless(tmp_path: Path) -> None:
    video, question = _media(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    proc = run_agent("simulate", "--camera", str(video), "--mic", str(question), "--offline",
                     env=env)
    assert_one_line_error(proc, "glasses-agent", "no display", "--headless")


def test_no_camera_and_no_microphone_are_one_line_each(tmp_path: Path) -> None:
    _, question = _media(tmp_path)
    proc = run_agent("simulate", "--headless", "--camera", "7", "--mic", str(question),
                     "--offline")
    assert_one_line_error(proc, "glasses-agent", "no camera", "--camera FILE")
    sounddevice = pytest.importorskip("sounddevice")
    if any(d.get("max_input_channels", 0) > 0 for d in sounddevice.query_devices()):
        pytest.skip("this machine has a microphone")
    proc = run_agent("simulate", "--headless", "--no-camera", "--offline")
    assert_one_line_error(proc, "glasses-agent", "no microphone", "--mic FILE.wav")
