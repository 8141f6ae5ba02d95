"""Field logs: a real session recorded to MCAP and read back with the standard ``mcap``
reader; faces checked by a second detector; replayed twice; a recording process killed
with SIGKILL; reports with plots; damaged logs; the size budget; the live view.

The session is the real runtime on espeak-ng speech and a scikit-image photo with a face,
the cloud a real gateway on 127.0.0.1 with a fixed-text backend (the LLM is not the
subject here). No latency is asserted: it is recorded.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from support.aio import run, running_gateway
from support.cli import assert_one_line_error, run_agent
from support.images import face_detector, photo
from support.speech import compose, speak, write_wav

from glasses_agent.config import Config, load_config
from glasses_agent.edge.build import CloudTarget, Inputs, build_runtime
from glasses_agent.edge.events import (
    Answered,
    AssistantState,
    Decided,
    Heard,
    LinkChanged,
    StateChanged,
    TurnTimings,
)
from glasses_agent.edge.runtime import TurnResult
from glasses_agent.fieldlog import schemas
from glasses_agent.fieldlog.reading import read_log
from glasses_agent.fieldlog.recorder import Recorder
from glasses_agent.frames import LinkState, VideoFrame

pytestmark = pytest.mark.slow

TOKEN = "tok-1"  # the device token of support.aio's gateway: it must appear in no record
QUESTIONS = ("Hey glasses, what time is it?",
             "Hey glasses, what is the person in this picture wearing?")
CLOUD_TEXT = "A white space suit with a flag on its sleeve."


def config_for(tmp: Path, **fieldlog: Any) -> Config:
    config = load_config("/dev/null", environ={})
    return dataclasses.replace(
        config, memory=dataclasses.replace(config.memory, path=str(tmp / "memory.sqlite")),
        fieldlog=dataclasses.replace(config.fieldlog, **fieldlog))


def mcap_messages(path: Path) -> tuple[list[tuple[Any, Any, Any]], bool]:
    """Every message the standard ``mcap`` reader gives, read front to back as a stream (a
    file cut off by a crash has no summary to seek by), and whether it ended early."""
    from mcap.reader import NonSeekingReader

    found: list[tuple[Any, Any, Any]] = []
    with path.open("rb") as f:
        try:
            found.extend(NonSeekingReader(f, validate_crcs=True).iter_messages(
                log_time_order=False))
        except Exception:  # the record the crash cut off (EndOfFile, a short field)
            return found, True
    return found, False


@pytest.fixture(scope="module")
def session_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[TurnResult]]:
    """Two turns through the real runtime (one on the device, one in the cloud with the
    keyframe), recorded with audio: the log and the runtime's own results."""
    from glasses_agent.gateway.reasoning import DelayBackend

    tmp = tmp_path_factory.mktemp("session")
    parts: list[Any] = [0.5]
    for question in QUESTIONS:
        parts += [speak(question), 1.2]
    mic = write_wav(tmp / "questions.wav", compose(parts)[0])
    view = tmp / "astronaut.jpg"
    assert cv2.imwrite(str(view), photo("astronaut"))
    config = config_for(tmp)
    log = tmp / "session.mcap"

    async def main() -> list[TurnResult]:
        backend = DelayBackend(text=CLOUD_TEXT, deltas=4, delay_per_delta_s=0.02)
        async with running_gateway(backend) as gateway:
            with Recorder.open(log, config, command="test", audio=True) as recorder:
                runtime = build_runtime(
                    config, Inputs(camera=str(view), mic=str(mic), fast=True, silent=True),
                    cloud=CloudTarget(url=gateway.url, token=TOKEN), tap=recorder,
                    notice=lambda text: None)
                return await runtime.run()

    results = run(main(), timeout_s=240)
    assert [r.decided.kind for r in results if r.decided] == ["local", "escalate"]
    return log, results


def test_a_session_reads_back_with_the_standard_mcap_reader(
        session_log: tuple[Path, list[TurnResult]]) -> None:
    log, results = session_log
    messages, cut = mcap_messages(log)
    assert not cut
    counts = Counter(channel.topic for _, channel, _ in messages)
    kinds = {channel.topic: (schema.name, schema.encoding, channel.message_encoding)
             for schema, channel, _ in messages}
    for channel in schemas.CHANNELS:  # every channel has the schema the docs name
        if channel.topic in kinds:
            name, encoding, message_encoding = kinds[channel.topic]
            assert name == channel.schema
            foxglove = channel.schema.startswith("foxglove.")
            assert (encoding, message_encoding) == (("protobuf", "protobuf") if foxglove
                                                    else ("jsonschema", "json"))
    assert counts["/session"] == counts["/session/end"] == 1
    for topic in ("/events/heard", "/events/decided", "/events/answered",
                  "/events/turn_timings"):
        assert counts[topic] == 2, topic
    # Each keyframe that went to the cloud, and no other (the runtime may find the frame it
    # chose already gone under load, and then sends none).
    sent = [r for r in results if r.keyframe_bytes > 0]
    assert counts["/cloud/keyframe"] == len(sent)
    assert counts["/camera/image"] >= 1 and counts["/perception"] >= 1
    assert counts["/camera/annotations"] == counts["/perception"]
    assert counts["/tts"] >= 2 and counts["/log"] >= 1 and counts["/hearing/vad"] > 50
    records = {topic: [json.loads(m.data) for _, c, m in messages if c.topic == topic]
               for topic in counts if kinds[topic][2] == "json"}
    transcripts = [f["text"] for f in records["/hearing/frames"] if f["kind"] == "transcript"]
    assert transcripts == [r.heard.text for r in results]
    assert [a["text"] for a in records["/events/answered"]] == \
        [r.answered.text for r in results if r.answered]
    for topic, items in records.items():  # each record has what its schema requires
        schema = json.loads(next(s.data for s, c, _ in messages if c.topic == topic))
        for item in items:
            assert set(schema["required"]) <= set(item), topic
    wire = [(m["direction"], m["type"]) for m in records["/protocol"]]
    assert ("sent", "hello") in wire and ("sent", "query") in wire \
        and ("received", "answer.done") in wire
    assert wire.count(("sent", "keyframe")) == len(sent)
    everything = b"".join(m.data for _, _, m in messages)
    assert TOKEN.encode() not in everything and b"resume_handle" not in everything
    session = records["/session"][0]
    assert session["command"] == "test" and session["camera"] and session["cloud"]
    assert session["config"]["cloud"]["token"] in ("", "***")


def test_a_bundled_scenario_recorded_by_simulate_reads_back(tmp_path: Path) -> None:
    from mcap.reader import make_reader

    from simulator.cli import bundled_scenarios

    [scenario] = bundled_scenarios().glob("*time_and_battery.toml")  # two device turns
    log = tmp_path / "scenario.mcap"
    env = {**os.environ, "GLASSES_AGENT_MEMORY__PATH": str(tmp_path / "memory.sqlite")}
    proc = run_agent("simulate", "--scenario", str(scenario), "--record", str(log),
                     config="/dev/null", env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"field log: {log}" in proc.stderr
    with log.open("rb") as f:  # the standard reader, by the summary at the end
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None
        counts = Counter({summary.channels[cid].topic: n
                          for cid, n in summary.statistics.channel_message_counts.items()})
        names = {c.topic: summary.schemas[c.schema_id].name for c in summary.channels.values()}
        heard = [json.loads(m.data)["question"]
                 for _, _, m in reader.iter_messages(topics=["/events/heard"])]
    known = {channel.topic: channel.schema for channel in schemas.CHANNELS}
    assert {topic: known.get(topic) for topic in names} == names  # only ours, as documented
    assert counts["/session"] == counts["/session/end"] == 1
    for topic in ("/events/heard", "/events/decided", "/events/answered",
                  "/events/turn_timings"):
        assert counts[topic] == 2, (topic, counts)
    assert counts["/camera/image"] >= 1 and counts["/perception"] >= 1  # the turns' frames
    assert counts["/camera/annotations"] == counts["/perception"]
    assert counts["/events/link_changed"] >= 1 and counts["/events/led_changed"] >= 1
    assert counts["/hearing/vad"] > 50 and counts["/tts"] >= 2
    assert counts["/audio"] == 0  # the wearer's voice only when asked for
    assert "time" in heard[0].lower() and "battery" in heard[1].lower()
    # Several scenarios record one log each into a folder, which must exist.
    assert_one_line_error(
        run_agent("simulate", "--scenario", "bundled", "--record", str(log.with_suffix(".x")),
                  config="/dev/null"), "glasses-agent simulate: ", "give an existing folder")


def test_the_audio_is_all_there(session_log: tuple[Path, list[TurnResult]]) -> None:
    log, _ = session_log
    audio = list(read_log(log).audio())
    starts = [start for start, _, _ in audio]
    assert starts == sorted(starts) and {rate for _, _, rate in audio} == {16_000}
    heard_s = sum(len(samples) for _, samples, _ in audio) / 16_000
    wav_s = float(os.path.getsize(log.parent / "questions.wav") - 44) / 2 / 16_000
    assert abs(heard_s - wav_s) < 0.1  # every chunk the listener heard, none twice


def test_a_log_recorded_with_faces_shows_none_to_a_second_detector(
        session_log: tuple[Path, list[TurnResult]]) -> None:
    # The frames were blurred by the configured redactor (Haar, checked by other
    # cascades); MTCNN, a third kind of detector, looks at what was kept.
    mtcnn = face_detector("mtcnn")
    assert mtcnn.detect(photo("astronaut"))  # the scene has a face to hide
    log = read_log(session_log[0])
    images = log.images(schemas.CAMERA) + log.images(schemas.KEYFRAME)
    assert log.images(schemas.CAMERA)  # the turn's frame at least
    for _, jpeg in images:
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        assert image is not None and image.shape[1] >= 320
        assert not mtcnn.detect(image)


def test_replay_twice_gives_the_same_result_and_matches_the_recording(
        session_log: tuple[Path, list[TurnResult]], asr: Any) -> None:
    from glasses_agent.edge.perception.loop import Perceiver
    from glasses_agent.fieldlog.replay import config_from_record, replay

    log = read_log(session_log[0])
    perceiver = Perceiver.from_config(config_from_record(log.session["config"]))
    first = replay(log, asr=asr, perceiver=perceiver)
    second = replay(log, asr=asr, perceiver=perceiver)
    assert first.as_dict() == second.as_dict()
    assert first.audio_replayed and len(first.turns) == 2
    assert not first.regression, first.as_dict()
    assert [t.replayed.route for t in first.turns if t.replayed] == ["device", "cloud"]
    assert first.turns[1].replayed is not None and first.turns[1].replayed.answer == CLOUD_TEXT


def test_replay_exits_1_and_names_the_difference_after_a_change(
        session_log: tuple[Path, list[TurnResult]], capsys: pytest.CaptureFixture[str]) -> None:
    from glasses_agent.cli import main

    # A change to the router: "wearing" now asks for contemplating mode.
    code = main(["--config", "/dev/null", "--set", 'router.contemplate_keywords=["wearing"]',
                 "replay", str(session_log[0]), "--json"])
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and result["regression"]
    [changed] = [t for t in result["turns"] if t["differences"]]
    assert changed["recorded"]["kind"] == "escalate"
    assert changed["replayed"]["kind"] == "contemplate"
    assert any(d.startswith("kind:") for d in changed["differences"])


def test_ask_records_the_armed_gate_and_replay_applies_it(tmp_path: Path, asr: Any) -> None:
    from glasses_agent.fieldlog.replay import replay

    # `ask` takes the whole file as the question (no wake phrase): it arms the wake gate.
    audio = write_wav(tmp_path / "q.wav", compose([0.3, speak("What time is it?"), 0.6])[0])
    image = tmp_path / "view.jpg"
    assert cv2.imwrite(str(image), photo("coffee"))
    log = tmp_path / "ask.mcap"
    env = {**os.environ, "GLASSES_AGENT_MEMORY__PATH": str(tmp_path / "memory.sqlite")}
    proc = run_agent("ask", "--image", str(image), "--audio", str(audio), "--offline",
                     "--json", "--record", str(log), "--record-audio", config="/dev/null",
                     env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["rule"] == "time" and f"field log: {log}" in proc.stderr
    recorded = read_log(log)
    assert recorded.json(schemas.HEARING_CONTROL)[0]["until_audio_s"] is None  # always
    result = replay(recorded, asr=asr)
    assert not result.regression, result.as_dict()
    assert [t.replayed.question for t in result.turns if t.replayed] == ["What time is it?"]
    # Without the recorded arm the gate would wait for the wake phrase: the turn is lost.
    recorded.records = [r for r in recorded.records if r.topic != "/hearing/control"]
    unarmed = replay(recorded, asr=asr)
    assert unarmed.regression and "missing" in unarmed.turns[0].differences[0]


def test_a_recording_killed_with_sigkill_reads_back(tmp_path: Path) -> None:
    mic = write_wav(tmp_path / "q.wav", compose([0.3, speak(QUESTIONS[0]), 30.0])[0])
    view = tmp_path / "view.jpg"
    assert cv2.imwrite(str(view), photo("coffee"))
    log = tmp_path / "killed.mcap"
    env = {**os.environ, "GLASSES_AGENT_MEMORY__PATH": str(tmp_path / "memory.sqlite")}
    child = subprocess.Popen(
        [sys.executable, "-m", "glasses_agent.cli", "--config", "/dev/null", "run", "--offline",
         "--camera", str(view), "--mic", str(mic), "--record", str(log), "--events", "-"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 180
        for line in child.stdout:  # the events, as they happen (the mic is paced)
            if json.loads(line)["event"] == "answered" or time.monotonic() > deadline:
                break
        time.sleep(2.5)  # more than [fieldlog] flush_every_s: the answer is on disk
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    messages, cut = mcap_messages(log)
    assert cut  # no footer: the standard reader stops at the end it finds
    topics = Counter(channel.topic for _, channel, _ in messages)
    assert topics["/session"] == 1 and topics["/session/end"] == 0
    answered = [json.loads(m.data) for _, c, m in messages if c.topic == "/events/answered"]
    assert answered and answered[0]["text"].startswith("It's ")
    ours = read_log(log)
    assert ours.cut_at is not None and f"byte {ours.cut_at}" in ours.note
    proc = run_agent("report", str(log), "--out", str(tmp_path / "report"), config="/dev/null")
    assert proc.returncode == 0, proc.stderr
    assert "cut off at byte" in proc.stderr and "what time is it?" in proc.stdout


# --- a small log made by the recorder itself (no models), for reports and damage -------


def small_log(path: Path, *, totals_ms: list[float], outage: tuple[float, float] | None,
              stretch: float = 1.0) -> Path:
    """A session of len(totals_ms) cloud turns, recorded through the real recorder from
    events alone; ``outage``: the link down from/to (s); ``stretch`` scales every stage."""
    config = config_for(path.parent, blur_faces=False)
    recorder = Recorder.open(path, config, command="scripted")
    recorder.session({"clock_s": 0.0, "camera": False, "cloud": True, "models": {},
                      "options": {}, "notes": []})
    recorder.event(LinkChanged(timestamp_s=0.0, link=LinkState.CONNECTED))
    if outage is not None:
        recorder.event(LinkChanged(timestamp_s=outage[0], link=LinkState.RECONNECTING))
        recorder.event(LinkChanged(timestamp_s=outage[1], link=LinkState.CONNECTED))
    for i, total in enumerate(totals_ms):
        at, qid, total = 10.0 * (i + 1), f"q-{i}", total * stretch
        question = f"question number {i} & <b>{i}</b>"
        recorder.event(Heard(timestamp_s=at, query_id=qid, text=question, question=question,
                             start_s=at - 2, end_s=at - 0.2))
        recorder.event(Decided(timestamp_s=at + 0.1, query_id=qid, question=question,
                               kind="escalate", rule="escalate", reason="open question"))
        recorder.event(Answered(timestamp_s=at + total / 1000, query_id=qid,
                                text=f"answer {i}", route="cloud", rule="escalate"))
        recorder.event(TurnTimings(query_id=qid, end_of_speech_s=at - 0.2, route="cloud",
                                   asr_ms=200 * stretch, perception_ms=250 * stretch,
                                   route_ms=260 * stretch, first_token_ms=total * 0.5,
                                   first_audio_ms=total * 0.6, total_ms=total))
        recorder.event(StateChanged(timestamp_s=at, state=AssistantState.THINKING))
    recorder.close()
    return path


def test_a_report_has_the_turns_percentiles_outages_and_plots(tmp_path: Path) -> None:
    from PIL import Image

    from glasses_agent.fieldlog.report import build_report, write_report

    totals = [900.0, 1100.0, 1000.0, 4000.0, 1200.0]
    log = small_log(tmp_path / "a.mcap", totals_ms=totals, outage=(31.0, 36.5))
    report = build_report([log])
    [one] = report.logs
    assert [t.latency_ms["total"] for t in one.turns] == totals
    assert one.percentiles["total"]["p50"] == 1100.0 and one.percentiles["total"]["max"] == 4000
    assert one.percentiles["asr"]["n"] == 5 and one.routes == {"cloud": 5}
    [outage] = one.outages
    assert outage.state == "reconnecting" and abs(outage.duration_s - 5.5) < 0.01
    files = write_report(report, tmp_path / "out")
    for name in ("per_turn", "over_time"):
        png = files[name]
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert 10_000 < png.stat().st_size < 2_000_000
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            width, height = image.size
            assert 500 <= width <= 3000 and 250 <= height <= 1500
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # drawn, not blank
    page = files["html"].read_text()
    assert "latency_per_turn.png" in page and "latency_over_time.png" in page
    assert "&lt;b&gt;3&lt;/b&gt;" in page and "<b>3</b>" not in page  # text is escaped
    assert json.loads(files["json"].read_text())["logs"][0]["turns"][3]["latency_ms"][
        "total"] == 4000.0


def test_two_logs_side_by_side_on_the_command_line(tmp_path: Path) -> None:
    a = small_log(tmp_path / "before.mcap", totals_ms=[1000.0, 1200.0, 1100.0], outage=None)
    b = small_log(tmp_path / "after.mcap", totals_ms=[1000.0, 1200.0, 1100.0], outage=None,
                  stretch=0.5)
    out = tmp_path / "ab"
    proc = run_agent("report", str(a), str(b), "--out", str(out), "--json",
                     config="/dev/null")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert [log["name"] for log in report["logs"]] == ["A: before", "B: after"]
    assert report["comparison"]["total"]["p50_ratio"] == 0.5
    assert report["comparison"]["asr"]["p50_ratio"] == 0.5
    page = (out / "index.html").read_text()
    assert "B against A" in page and "A: before" in page and "B: after" in page


def first_chunk(data: bytes) -> int:
    """The offset of the first chunk record (opcode 0x06), walking the records."""
    offset = 8  # the magic
    while data[offset] != 0x06:
        offset += 9 + int.from_bytes(data[offset + 1:offset + 9], "little")
    return offset


def test_damaged_and_cut_off_logs_are_one_line_naming_the_byte(tmp_path: Path) -> None:
    log = small_log(tmp_path / "good.mcap", totals_ms=[1000.0] * 40, outage=None)
    data = log.read_bytes()
    chunk_at = first_chunk(data)
    damaged = tmp_path / "damaged.mcap"
    damaged.write_bytes(data[: chunk_at + 60] + bytes(64) + data[chunk_at + 124:])
    line = assert_one_line_error(run_agent("report", str(damaged), config="/dev/null"),
                                 "glasses-agent report: ", "damaged at byte")
    assert int(re.search(r"byte (\d+)", line).group(1)) <= chunk_at + 60  # type: ignore[union-attr]
    not_mcap = tmp_path / "notes.mcap"
    not_mcap.write_text("these are my notes, not a log\n")
    assert_one_line_error(run_agent("report", str(not_mcap), config="/dev/null"),
                          "glasses-agent report: ", "not an MCAP file")
    cut = tmp_path / "cut.mcap"
    cut.write_bytes(data[: len(data) * 2 // 3])
    proc = run_agent("report", str(cut), "--out", str(tmp_path / "cut-report"),
                     config="/dev/null")
    assert proc.returncode == 0 and "cut off at byte" in proc.stderr, proc.stderr
    empty = tmp_path / "empty.mcap"
    empty.write_bytes(data[:30])
    assert_one_line_error(run_agent("replay", str(empty), config="/dev/null"),
                          "glasses-agent replay: ", "cut off at byte")


def test_the_size_budget_drops_camera_frames_first_and_says_so(tmp_path: Path) -> None:
    config = config_for(tmp_path, blur_faces=False, camera_fps=100.0, max_mb=0.5)
    rng = np.random.default_rng(0)
    with Recorder.open(tmp_path / "budget.mcap", config, command="budget") as recorder:
        recorder.session({"clock_s": 0.0, "camera": True})
        for i in range(40):
            noise = rng.integers(0, 255, (240, 320, 3), dtype=np.uint8)  # JPEG ~ 50+ kB
            recorder.camera_frame(VideoFrame(timestamp_s=i * 0.1, image_bgr=noise, index=i))
            recorder.event(StateChanged(timestamp_s=i * 0.1, state=AssistantState.IDLE))
            time.sleep(0.01)  # the worker keeps up: frames are dropped by the budget
    log = read_log(tmp_path / "budget.mcap")
    assert 0 < len(log.topic(schemas.CAMERA)) < 40
    assert len(log.topic("/events/state_changed")) == 40  # nothing else was dropped
    notices = [log.decode(r).message for r in log.topic(schemas.LOG)]
    assert any("camera frames dropped" in n for n in notices), notices
    end = log.session_end
    assert end is not None and end["dropped"]["/camera/image"] > 0
    assert end["bytes"] <= 0.5e6 * 1.1


def test_the_live_view_serves_the_same_channels(tmp_path: Path) -> None:
    from websockets.sync.client import connect

    config = config_for(tmp_path, blur_faces=False)
    recorder = Recorder.open(tmp_path / "live.mcap", config, command="live", live_port=0)
    try:
        url = f"ws://127.0.0.1:{recorder.writer.live_port}"
        with connect(url, subprotocols=["foxglove.sdk.v1"], open_timeout=10) as ws:
            advertised: dict[str, int] = {}
            while len(advertised) < len(schemas.CHANNELS):
                message = json.loads(ws.recv(timeout=10))
                if message["op"] == "advertise":
                    advertised.update({c["topic"]: c["id"] for c in message["channels"]})
            assert set(advertised) == {c.topic for c in schemas.CHANNELS}
            ws.send(json.dumps({"op": "subscribe", "subscriptions": [
                {"id": 7, "channelId": advertised["/events/link_changed"]}]}))
            time.sleep(0.5)
            recorder.event(LinkChanged(timestamp_s=time.monotonic(), link=LinkState.OFFLINE))
            data = ws.recv(timeout=10)
            while isinstance(data, str):
                data = ws.recv(timeout=10)
            assert data[0] == 1 and int.from_bytes(data[1:5], "little") == 7  # message data
            assert json.loads(data[13:])["link"] == "offline"
    finally:
        recorder.close()
    assert len(read_log(tmp_path / "live.mcap").topic("/events/link_changed")) == 1


def test_the_docs_describe_every_channel() -> None:
    docs = (Path(__file__).resolve().parents[1] / "docs" / "field-logs.md").read_text()
    for channel in schemas.CHANNELS:
        assert f"`{channel.topic}`" in docs and channel.schema in docs, channel.topic
