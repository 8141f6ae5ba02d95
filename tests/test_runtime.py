"""The running glasses: whole turns through the real models, from a WAV and a camera source,
the embedded model behind a real gateway on 127.0.0.1 where the cloud is asked.

Speech is espeak-ng's; photos ship in scikit-image; signs are rendered. No LLM text is
asserted beyond what the facts put in it; timings are recorded, not asserted.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support.aio import run, running_gateway
from support.cli import assert_one_line_error, run_agent
from support.images import face_detector, photo, photograph, render_sign, write_video
from support.speech import compose, speak, trimmed, write_wav

from glasses_agent.config import Config, load_config
from glasses_agent.edge.build import CloudTarget, Inputs, build_runtime
from glasses_agent.edge.events import AssistantState, BargedIn, Heard, RuntimeEvent, StateChanged
from glasses_agent.edge.runtime import LOOK_BEFORE_SPEECH_S, Runtime, RuntimeOptions, TurnResult
from glasses_agent.edge.speech.text import word_error_rate
from glasses_agent.gateway.backends.local import LocalBackend
from glasses_agent.gateway.reasoning import ReasoningRequest

pytestmark = pytest.mark.slow


def config_for(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """The defaults, a memory file in ``tmp_path``, a short cloud timeout (the embedded model
    on a loaded 2-core machine), and any ``section={key: value}`` changes."""
    config = load_config("/dev/null")
    changes: dict[str, Any] = {
        "memory": dataclasses.replace(config.memory, path=str(tmp_path / "memory.sqlite")),
        "cloud": dataclasses.replace(config.cloud, answer_timeout_s=60.0),
    }
    for name, values in sections.items():
        changes[name] = dataclasses.replace(changes.get(name, getattr(config, name)), **values)
    return dataclasses.replace(config, **changes)


def question_wav(tmp_path: Path, *parts: float | str, name: str = "q.wav",
                 voice: str = "en-us") -> Path:
    """Silences (seconds) and sentences (espeak-ng) end to end."""
    audio, _ = compose([p if isinstance(p, float) else speak(p, voice) for p in parts])
    return write_wav(tmp_path / name, audio)


def image_file(tmp_path: Path, image: np.ndarray, name: str = "view.jpg") -> Path:
    path = tmp_path / name
    assert cv2.imwrite(str(path), image)
    return path


async def run_glasses(config: Config, inputs: Inputs, *, cloud: CloudTarget | None,
                      options: RuntimeOptions | None = None, follow_up: bool = True,
                      watch: Callable[[Runtime], None] | None = None,
                      ) -> tuple[list[TurnResult], list[RuntimeEvent]]:
    events: list[RuntimeEvent] = []
    runtime = build_runtime(config, inputs, cloud=cloud, options=options,
                            on_event=events.append, notice=lambda text: None)
    if watch is not None:
        watch(runtime)
    if follow_up:
        runtime.hearing.arm_follow_up(float("inf"))  # every utterance is a question
    results = await runtime.run()
    return results, events


class RecordingLocal(LocalBackend):
    """The embedded model, noting what each request carried (its keyframes)."""

    requests: list[ReasoningRequest]

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:  # type: ignore[override]
        self.requests.append(request)
        async for delta in super().stream(request):
            yield delta


def test_read_this_sign_and_the_time_are_answered_on_the_device(tmp_path: Path) -> None:
    sign = photograph(render_sign(["EXIT 12", "Main Street"]), scale=1.0)
    mic = question_wav(tmp_path, 0.5, "Hey glasses, read this sign.", 1.5,
                       "Hey glasses, what time is it?", 1.0)
    inputs = Inputs(camera=str(image_file(tmp_path, sign)), mic=str(mic), fast=True,
                    silent=True)
    results, events = run(run_glasses(config_for(tmp_path), inputs, cloud=None,
                                      follow_up=False))
    assert [r.decided.rule for r in results if r.decided] == ["read_text", "time"]
    read, clock = (r.answered for r in results)
    assert read is not None and read.route == "device"
    assert "EXIT 12" in read.text and "Main Street" in read.text
    assert clock is not None and clock.text.startswith("It's ") and clock.text.endswith("M.")
    timings = results[1].timings
    assert timings is not None and 0 < timings.asr_ms <= timings.total_ms
    states = [e.state for e in events if isinstance(e, StateChanged)]
    assert AssistantState.THINKING in states


def test_an_open_question_goes_to_the_cloud_with_a_blurred_keyframe(tmp_path: Path) -> None:
    # The astronaut photo has a face: the keyframe that leaves must show none.
    assert face_detector("mtcnn").detect(photo("astronaut"))
    view = image_file(tmp_path, photo("astronaut"))
    mic = question_wav(tmp_path, 0.5, "What is the person in this picture wearing?", 1.0)
    config = config_for(tmp_path)

    async def main() -> tuple[list[TurnResult], list[ReasoningRequest]]:
        backend = RecordingLocal(config.local_llm)
        backend.requests = []
        async with running_gateway(backend, backend_slots=1) as gateway:
            results, _ = await run_glasses(
                config, Inputs(camera=str(view), mic=str(mic), fast=True, silent=True),
                cloud=CloudTarget(url=gateway.url, token="tok-1"))
        return results, backend.requests

    results, requests = run(main())
    [turn] = results
    assert turn.decided is not None and turn.decided.kind == "escalate"
    assert turn.answered is not None and turn.answered.route == "cloud" and turn.answered.text
    assert turn.keyframe_bytes > 10_000
    [request] = requests
    [jpeg] = request.images_jpeg
    sent = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert not face_detector("mtcnn").detect(sent)  # a third detector finds no face
    assert request.facts.people_in_view >= 1 and request.facts.intent == "other"
    timings = turn.timings
    assert timings is not None and 0 < timings.first_token_ms <= timings.total_ms


@pytest.mark.parametrize("asked", [
    ("Hey glasses, what is the person in this picture wearing?",),
    ("Hey glasses.", 0.6, "What is the person in this picture wearing?"),  # a pause after it
], ids=["in-one-breath", "after-a-pause"])
def test_the_wake_phrase_starts_the_look_and_the_frame_seen_is_the_one_sent(
        tmp_path: Path, asked: tuple[str | float, ...]) -> None:
    # Perception and the keyframe's blur take most of a second on 2 cores: they are made
    # while the wearer is still asking, once, of one frame, and the answer uses both.
    view = image_file(tmp_path, photo("astronaut"))
    mic = question_wav(tmp_path, 0.5, *asked, 1.5)
    config = config_for(tmp_path)
    looks: list[Any] = []
    made: list[bytes] = []

    def watch(runtime: Runtime) -> None:
        eyes = runtime.eyes
        assert eyes is not None
        look_now, redact = eyes.look_now, eyes.redactor.outgoing_jpeg

        def counted_look() -> Any:
            looks.append(look_now())
            return looks[-1]

        def counted_redact(*args: Any, **kwargs: Any) -> Any:
            out = redact(*args, **kwargs)
            made.append(out.jpeg)
            return out

        eyes.look_now = counted_look  # type: ignore[method-assign]
        eyes.redactor.outgoing_jpeg = counted_redact  # type: ignore[method-assign]

    async def main() -> tuple[list[TurnResult], list[ReasoningRequest]]:
        backend = RecordingLocal(config.local_llm)
        backend.requests = []
        async with running_gateway(backend, backend_slots=1) as gateway:
            results, _ = await run_glasses(
                config, Inputs(camera=str(view), mic=str(mic), silent=True),
                cloud=CloudTarget(url=gateway.url, token="tok-1"), follow_up=False,
                watch=watch)
        return results, backend.requests

    results, requests = run(main())
    [turn] = results
    assert turn.decided is not None and turn.decided.kind == "escalate"
    # A look at the wake phrase (another if the question's speech began anew after a pause),
    # each of a frame seen while the wearer asked (from the wake phrase on).
    assert looks and all(seen is not None for seen in looks)
    assert all(turn.heard.start_s - LOOK_BEFORE_SPEECH_S <= frame.timestamp_s
               <= turn.heard.end_s for _, frame in looks)
    [request] = requests
    [sent] = request.images_jpeg
    assert sent in made and len(made) == len(looks)  # a look's JPEG, none made again for it
    assert request.facts.people_in_view >= 1


def test_a_cloud_that_cannot_be_reached_gets_the_device_fallback_in_time(tmp_path: Path) -> None:
    sign = photograph(render_sign(["OPEN 9-17"]))
    mic = question_wav(tmp_path, 0.5, "How long is this shop open today?", 1.0)
    config = config_for(tmp_path, cloud={"answer_timeout_s": 2.0, "connect_timeout_s": 1.0})
    dead = CloudTarget(url="ws://127.0.0.1:9", token="tok-1")  # nothing listens on port 9
    inputs = Inputs(camera=str(image_file(tmp_path, sign)), mic=str(mic), fast=True, silent=True)
    start = time.monotonic()
    results, _ = run(run_glasses(config, inputs, cloud=dead))
    [turn] = results
    assert turn.answered is not None and turn.answered.route == "offline"
    assert turn.answered.text.startswith("I'm offline")
    assert "OPEN" in turn.answered.text  # the best the device can say: what it reads
    assert turn.timings is not None and turn.timings.total_ms < 2_000 + 5_000
    assert time.monotonic() - start < 60


def test_remember_then_recall_across_a_restart(tmp_path: Path) -> None:
    sign = photograph(render_sign(["LEVEL 3", "Zone B"]))
    camera = str(image_file(tmp_path, sign))
    config = config_for(tmp_path)
    first = question_wav(tmp_path, 0.5, "Remember where I parked.", 1.0, name="remember.wav")
    results, _ = run(run_glasses(config, Inputs(camera=camera, mic=str(first), fast=True,
                                                silent=True), cloud=None))
    assert results[0].decided is not None and results[0].decided.rule == "remember"
    # A new runtime (a restart), somewhere else: the note is on the device.
    later = question_wav(tmp_path, 0.5, "Where did I park?", 1.0, name="recall.wav")
    elsewhere = str(image_file(tmp_path, photo("coffee"), name="elsewhere.jpg"))
    results, _ = run(run_glasses(config, Inputs(camera=elsewhere, mic=str(later), fast=True,
                                                silent=True), cloud=None))
    answer = results[0].answered
    assert answer is not None and answer.route == "device"
    assert "where you parked" in answer.text and "LEVEL 3" in answer.text


def test_going_on_after_a_pause_replaces_the_early_turn(tmp_path: Path) -> None:
    # The first part ends the turn early (a statement, at 0.35 s of silence at most); the
    # wearer goes on within the VAD's 1 s: the whole turn is heard again (``revises``), and
    # the early turn's result and the note it kept are dropped.
    from glasses_agent.edge.memory import MemoryStore

    camera = str(image_file(tmp_path, photograph(render_sign(["LEVEL 3", "Zone B"]))))
    config = config_for(tmp_path)
    audio, _ = compose([0.5, trimmed("Remember where I parked."), 0.8,
                        trimmed("And what time is it?"), 1.2])
    mic = write_wav(tmp_path / "q.wav", audio)
    results, events = run(run_glasses(config, Inputs(camera=camera, mic=str(mic), fast=True,
                                                     silent=True), cloud=None))
    heard = [e for e in events if isinstance(e, Heard)]
    assert [h.revises for h in heard] == [False, True], [h.text for h in heard]
    # the revision is the whole turn: both parts (no exact text: int8 Whisper varies by CPU)
    assert word_error_rate("remember where I parked and what time is it", heard[1].text) \
        <= 0.35, heard[1].text
    [result] = results
    assert result.heard.query_id == heard[1].query_id
    kept = 1 if result.decided is not None and result.decided.rule == "remember" else 0
    with MemoryStore(config.memory.path) as memory:
        assert len(memory) == kept


def test_barge_in_stops_playback_and_tells_the_cloud_what_was_heard(tmp_path: Path) -> None:
    # The question, then (while the long answer plays) the wearer speaks again.
    long_answer = ("The museum opens at nine. It has three floors of paintings, a cafe on the "
                   "roof, and a garden behind it that is open until dusk every day of the week.")
    mic = question_wav(tmp_path, 0.5, "Hey glasses, tell me about the museum.", 3.0,
                       "Hey glasses, what time is it?", 2.0)
    config = config_for(tmp_path)

    async def main() -> tuple[list[TurnResult], list[RuntimeEvent], list[int]]:
        from glasses_agent.gateway.reasoning import DelayBackend

        # Still streaming when the wearer speaks (40 pieces, 0.1 s each).
        backend = DelayBackend(text=long_answer, deltas=40, delay_per_delta_s=0.1)
        async with running_gateway(backend) as gateway:
            results, events = await run_glasses(
                config, Inputs(camera=None, mic=str(mic), audio_out=str(tmp_path / "said.wav")),
                cloud=CloudTarget(url=gateway.url, token="tok-1"), follow_up=False)
            stored = await gateway.store.get("glasses-1", results[0].heard.query_id, time.time())
        return results, events, [stored.heard_chars if stored else -1]

    results, events, heard = run(main())
    barges = [e for e in events if isinstance(e, BargedIn)]
    assert len(barges) == 1
    barge = barges[0]
    assert 0 < barge.heard_chars < len(long_answer)
    assert barge.stop_ms < 300  # the budget is 100 ms p95: measured in benchmarks/
    assert heard == [barge.heard_chars]  # the gateway was told
    assert results[0].answered is not None and results[0].answered.cancelled
    assert results[-1].decided is not None and results[-1].decided.rule == "time"


def test_the_assistant_does_not_hear_its_own_voice(tmp_path: Path) -> None:
    from glasses_agent.edge.speech.echo import AcousticPath

    # Every utterance is taken as a question here (follow-up armed), so only the echo
    # guard stands between the answer coming back through the microphone and a new turn.
    mic = question_wav(tmp_path, 0.5, "Hey glasses, what day is it today?", 6.0)
    config = config_for(tmp_path)

    async def main() -> list[RuntimeEvent]:
        events: list[RuntimeEvent] = []
        inputs = Inputs(camera=None, mic=str(mic), audio_out=str(tmp_path / "said.wav"))
        runtime = build_runtime(config, inputs, cloud=None, on_event=events.append,
                                notice=lambda text: None)
        runtime.hearing.arm_follow_up(float("inf"))
        path = AcousticPath(gain=0.5, delay_s=0.004, reverb_s=0.01)
        runtime.hearing.add_echo(path)  # the speaker's sound reaches the microphone
        await runtime.run()
        return events

    events = run(main())
    heard = [e for e in events if isinstance(e, Heard)]
    assert len(heard) == 1, [e.text for e in heard]  # the question, and not the answer
    assert not [e for e in events if isinstance(e, BargedIn)]


def test_a_long_fast_run_answers_every_question_in_order(tmp_path: Path) -> None:
    frames = [photograph(render_sign([f"GATE {i}"]), seed=i) for i in range(3)]
    video = write_video(tmp_path / "walk.avi", frames * 10, fps=5.0)
    questions = ["Hey glasses, what time is it?", "Hey glasses, read this sign.",
                 "Hey glasses, are you online?", "Hey glasses, is the camera on?",
                 "Hey glasses, what time is it?"]
    parts: list[float | str] = []
    for q in questions:
        parts += [55.0, q]
    mic = question_wav(tmp_path, *parts, 5.0)  # about five minutes
    results, _ = run(run_glasses(config_for(tmp_path), Inputs(camera=str(video), mic=str(mic),
                                                              fast=True, silent=True),
                                 cloud=None, follow_up=False), timeout_s=600)
    rules = [r.decided.rule for r in results if r.decided is not None]
    assert rules == ["time", "read_text", "device_status", "privacy_status", "time"]
    assert all(r.answered is not None and r.answered.text for r in results)


@pytest.mark.parametrize("problem", ["missing", "not_an_image", "no_speech"])
def test_ask_refuses_bad_input_in_one_line(tmp_path: Path, problem: str) -> None:
    image = image_file(tmp_path, photo("coffee"))
    audio = question_wav(tmp_path, 0.3, "What is this?", 0.3)
    if problem == "missing":
        image = tmp_path / "nope.jpg"
    elif problem == "not_an_image":
        image = tmp_path / "text.jpg"
        image.write_text("not a picture")
    else:
        audio = write_wav(tmp_path / "silence.wav", np.zeros(16_000, dtype=np.float32))
    proc = run_agent("ask", "--image", str(image), "--audio", str(audio), "--offline",
                         "--json", config="/dev/null", timeout=300)
    assert_one_line_error(proc, "glasses-agent ask: ")


def test_ask_prints_one_json_object_with_the_latency_by_stage(tmp_path: Path) -> None:
    image = image_file(tmp_path, photo("coffee"))
    audio = question_wav(tmp_path, 0.3, "What time is it?", 0.5)
    proc = run_agent("ask", "--image", str(image), "--audio", str(audio), "--offline",
                         "--json", "--tts-out", str(tmp_path / "answer.wav"),
                         config="/dev/null", timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["route"] == "device" and result["rule"] == "time"
    assert set(result["latency_ms"]) == {"asr", "perception", "route", "first_token",
                                         "first_audio", "total"}
    assert result["keyframe_bytes"] == 0
    assert (tmp_path / "answer.wav").stat().st_size > 10_000


def test_ctrl_c_stops_cleanly_while_speaking(tmp_path: Path) -> None:
    import soundfile

    mic = question_wav(tmp_path, 0.5, "Hey glasses, what time is it?", 20.0)
    said = tmp_path / "said.wav"
    env = {**os.environ, "GLASSES_AGENT_MEMORY__PATH": str(tmp_path / "memory.sqlite")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "glasses_agent.cli", "--config", "/dev/null", "run",
         "--no-camera", "--mic", str(mic), "--offline", "--audio-out", str(said),
         "--events", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    states = []
    try:
        for line in proc.stdout:  # until the answer is being spoken
            event = json.loads(line)
            if event["event"] == "state_changed":
                states.append(event["state"])
                if event["state"] == "speaking":
                    break
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "speaking" in states, (states, proc.stderr.read() if proc.stderr else "")
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 10  # not the 20 s of audio left
    assert "Traceback" not in err
    audio, rate = soundfile.read(said, dtype="float32")  # the file was closed properly
    assert rate > 0 and 0 < len(audio) / rate < 5  # what played before the stop, no more
