"""The whole loop, as the wearer waits it: end of speech -> the first audio sample, barge-in
stop time, and the resident memory of the running glasses. Prints one JSON object.

Every figure is measured from the truth in the audio (where the synthesized speech really
ends or starts), with the microphone file paced in real time as a live microphone would
deliver it, through the real runtime (``edge.build.build_runtime``: VAD, wake phrase, end
of turn, Whisper, perception, router, the edge client, a real gateway on loopback, TTS,
a real-time WAV sink).

- ``turns``: on-device questions ("what time is it") and cloud questions answered by a
  backend with a fixed time to first token (``--ttft-ms``, the whole answer in its first
  delta). The unavoidable waits are the endpointing (audio time from the true end of
  speech to the chunk where the turn was declared over) and, for the cloud, the backend's
  first token; ``overhead_ms`` is the rest: Whisper's work past the end of turn, routing,
  perception, the round trip, the TTS of the first sentence.
- ``barge_in``: the wearer speaks over a long answer (which reaches the microphone
  through a simulated acoustic path, as from open-ear speakers); ``stop_ms`` is from the
  true start of their speech to the moment the speaker went silent (held on the first
  chunk of speech), ``decided_ms`` to the moment the runtime stopped the answer for good.
  False barge-ins (outside their speech) are counted, and ``holds_released``: holds on a
  sound or a chunk of speech that the VAD did not go on to call speech (each a gap of
  32-190 ms); an answer that began while they were still talking and that they stopped
  is counted apart (``answers_begun_while_they_spoke``).
- ``memory`` (``--rss-minutes N``, 10 for the issue's figure): ``glasses-agent run`` as a
  user runs it (every model loaded: the embedded language model in the in-process
  gateway, Whisper, VAD, Smart Turn, recognition, OCR, faces, barcodes) on a changing
  camera video and a microphone file with a question every 30 s; resident memory sampled
  every 2 s; growth after the first minute.

    .venv/bin/python benchmarks/bench_speaking.py [--turns 8] [--barges 8] [--rss-minutes 10]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from support.images import photograph, render_sign, write_video  # noqa: E402
from support.speech import compose, speak, write_wav  # noqa: E402

from edge_models.cpu import cpu_features  # noqa: E402
from glasses_agent.config import Config, load_config  # noqa: E402
from glasses_agent.edge.build import CloudTarget, Inputs, build_runtime  # noqa: E402
from glasses_agent.edge.events import BargedIn, Heard, RuntimeEvent, TurnTimings  # noqa: E402
from glasses_agent.edge.speech.echo import AcousticPath  # noqa: E402
from glasses_agent.frames import Transcript  # noqa: E402
from glasses_agent.gateway import Gateway, TokenTable  # noqa: E402
from glasses_agent.gateway.reasoning import DelayBackend  # noqa: E402

VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb-x-rp", "en-us+m3", "en-gb-scotland"]
DEVICE_QUESTIONS = ["Hey glasses, what time is it?", "Hey glasses, what time is it now?"]
CLOUD_QUESTIONS = ["Hey glasses, who painted this picture?",
                   "Hey glasses, what is the history of this building?"]
CLOUD_ANSWER = "It was painted by Claude Monet in 1872. It shows the harbour at Le Havre."
LONG_ANSWER = ("The museum opens at nine. It has three floors of paintings, a cafe on the roof, "
               "and a garden behind it that is open until dusk. The first floor holds the "
               "old masters, the second the impressionists, and the third modern art. "
               "Guided tours leave every hour from the main hall.")
INTERJECTIONS = ["Stop, what time is it?", "Wait, what time is it?"]


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {"n": len(values), "p50": pct(values, 50), "p95": pct(values, 95),
            "max": round(max(values), 1) if values else float("nan")}


def base_config(tmp: Path) -> Config:
    config = load_config("/dev/null")
    return dataclasses.replace(
        config, memory=dataclasses.replace(config.memory, path=str(tmp / "memory.sqlite")))


def view(tmp: Path) -> Path:
    """What the camera sees: a photographed platform sign."""
    import cv2

    image = tmp / "view.jpg"
    cv2.imwrite(str(image), photograph(render_sign(["PLATFORM 4", "Departs 14:45"]), seed=3))
    return image


async def _run_session(config: Config, mic: Path, image: Path, out: Path, backend: DelayBackend,
                       echo: AcousticPath | None) -> tuple[Any, list[RuntimeEvent],
                                                           list[tuple[float, float]]]:
    """One runtime over ``mic`` against a gateway with ``backend``; returns the runtime,
    its events and, per transcript, (audio time the turn was declared over, its wall time)."""
    gateway = Gateway(dataclasses.replace(config, gateway=dataclasses.replace(
        config.gateway, host="127.0.0.1", port=0)), backend=backend,
        tokens=TokenTable(["bench-glasses tok-bench"]))
    await gateway.start()
    events: list[RuntimeEvent] = []
    ends: list[tuple[float, float]] = []
    try:
        runtime = build_runtime(config, Inputs(camera=str(image), mic=str(mic),
                                               audio_out=str(out)),
                                cloud=CloudTarget(url=gateway.url, token="tok-bench"),
                                on_event=events.append, notice=lambda text: None)
        on_frame = runtime.hearing.on_frame

        def tap(item: Any) -> None:
            if isinstance(item.frame, Transcript):
                ends.append((item.audio_s, item.wall_s))
            on_frame(item)

        runtime.hearing.on_frame = tap
        if echo is not None:
            runtime.hearing.add_echo(echo)
        await runtime.run()
    finally:
        await gateway.shutdown(timeout_s=5.0)
    return runtime, events, ends


def turns(tmp: Path, n: int, ttft_s: float) -> dict[str, Any]:
    """End of speech -> first audio, on the device and from the cloud."""
    config = base_config(tmp)
    image = view(tmp)
    parts: list[float | np.ndarray] = [1.0]
    kinds = []
    for i in range(n):
        cloud = i % 2 == 1
        text = (CLOUD_QUESTIONS if cloud else DEVICE_QUESTIONS)[(i // 2) % 2]
        parts += [speak(text, VOICES[i % len(VOICES)]), 7.0 if cloud else 5.0]
        kinds.append("cloud" if cloud else "device")
    audio, spans = compose(parts)
    mic = write_wav(tmp / "turns.wav", audio)
    backend = DelayBackend(text=CLOUD_ANSWER, deltas=1, delay_per_delta_s=ttft_s)
    runtime, events, ends = asyncio.run(
        _run_session(config, mic, image, tmp / "said.wav", backend, echo=None))
    timings = [e for e in events if isinstance(e, TurnTimings)]
    rows: list[dict[str, Any]] = []
    for timing in timings:
        # its transcript: the first to come out after the end of speech the runtime saw
        heard_audio_s = min((a for a, wall_s in ends if wall_s >= timing.end_of_speech_s),
                            default=None)
        if heard_audio_s is None:
            continue
        index = max(i for i, (_, end) in enumerate(spans) if end <= heard_audio_s)
        true_end_s = spans[index][1]
        first_audio_s = timing.end_of_speech_s + timing.first_audio_ms / 1000
        e2a = (first_audio_s - runtime.hearing.to_wall_s(true_end_s)) * 1000
        endpoint = (heard_audio_s - true_end_s) * 1000
        waits = endpoint + (ttft_s * 1000 if timing.route == "cloud" else 0.0)
        heard = next((e.text for e in events if isinstance(e, Heard)
                      and e.query_id == timing.query_id), "")
        rows.append({"question": index, "kind": kinds[index], "route": timing.route,
                     "heard": heard, "end_to_first_audio_ms": round(e2a, 1),
                     "endpointing_ms": round(endpoint, 1), "overhead_ms": round(e2a - waits, 1),
                     "stages_ms": {k: getattr(timing, f"{k}_ms") for k in
                                   ("asr", "perception", "route", "first_token", "first_audio")}})
    out: dict[str, Any] = {"asked": n, "answered": len(rows), "ttft_ms": ttft_s * 1000,
                           "rows": rows}
    for kind in ("device", "cloud"):
        mine = [r for r in rows if r["kind"] == kind and r["route"] == kind]
        out[kind] = {"end_to_first_audio_ms": summary([r["end_to_first_audio_ms"] for r in mine]),
                     "endpointing_ms": summary([r["endpointing_ms"] for r in mine]),
                     "overhead_ms": summary([r["overhead_ms"] for r in mine])}
    out["overhead_ms"] = summary([r["overhead_ms"] for r in rows])
    return out


def barge_ins(tmp: Path, n: int, ttft_s: float) -> dict[str, Any]:
    """The wearer speaks over a long answer that echoes into the microphone."""
    config = base_config(tmp)
    image = view(tmp)
    parts: list[float | np.ndarray] = [1.0]
    for i in range(n):
        parts += [speak("Hey glasses, tell me about the museum.", VOICES[i % len(VOICES)]),
                  3.5 + 0.25 * (i % 4),  # well into the answer, at different points
                  speak(INTERJECTIONS[i % 2], VOICES[(i + 3) % len(VOICES)]), 6.0]
    audio, spans = compose(parts)
    mic = write_wav(tmp / "barge.wav", audio)
    backend = DelayBackend(text=LONG_ANSWER, deltas=1, delay_per_delta_s=ttft_s)
    echo = AcousticPath(gain=0.3, delay_s=0.004, reverb_s=0.01)
    runtime, events, _ = asyncio.run(
        _run_session(config, mic, image, tmp / "said.wav", backend, echo=echo))
    # Any speech of the wearer may barge in (a question asked over a long answer too); a
    # barge-in whose speech start lies in none of their speech is false (our own voice, or
    # noise). One that starts well inside their speech is an answer that began while they
    # were still talking (a pause taken for the end of the turn): counted apart, since the
    # true start of the speech it stopped on is not in the audio.
    wearer = [(runtime.hearing.to_wall_s(start), runtime.hearing.to_wall_s(end))
              for start, end in spans]
    stops: list[float] = []
    decided: list[float] = []  # when the runtime stopped the answer (cancelled the reply)
    false: list[dict[str, Any]] = []
    mid_speech = 0
    for barge in (e for e in events if isinstance(e, BargedIn)):
        span = next(((start, end) for start, end in wearer
                     if start - 0.1 <= barge.speech_start_s <= end + 0.3), None)
        if span is None:
            at_s = barge.speech_start_s - runtime.hearing.to_wall_s(0.0)
            false.append({"at_audio_s": round(at_s, 2), "heard_chars": barge.heard_chars})
            continue
        if barge.speech_start_s - span[0] > 0.3:
            mid_speech += 1
            continue
        silenced_s = barge.speech_start_s + barge.stop_ms / 1000  # held on its onset
        stops.append((silenced_s - span[0]) * 1000)
        decided.append((barge.timestamp_s - span[0]) * 1000)
    return {"interjections": n, "barge_ins": len(stops), "false_barge_ins": len(false),
            "false": false, "answers_begun_while_they_spoke": mid_speech,
            "stop_ms": summary(stops), "decided_ms": summary(decided),
            "stops_ms": [round(s, 1) for s in stops],
            "holds_released": runtime.hearing.holds_released, "echo_gain": 0.3,
            "interjection_starts_audio_s": [round(s, 2) for s, _ in spans[1::2]]}


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory(tmp: Path, minutes: float) -> dict[str, Any]:
    """``glasses-agent run`` with every model loaded, its RSS over ``minutes``."""
    import cv2

    frames = [cv2.resize(photograph(render_sign([f"GATE {i}", f"Coffee ${i % 9}.{10 + i}"][
        : 1 + i % 2]), seed=i), (640, 480)) for i in range(40)]
    fps = 2.0
    count = int(minutes * 60 * fps) + 20
    video = write_video(tmp / "walk.avi", [frames[i % len(frames)] for i in range(count)],
                        fps=fps)
    questions = ["Hey glasses, what time is it?", "Hey glasses, read this sign.",
                 "Hey glasses, what is this?", "Hey glasses, what does this sign mean?"]
    parts: list[float | np.ndarray] = [2.0]
    while sum(len(p) / 16000 if isinstance(p, np.ndarray) else p for p in parts) < minutes * 60:
        q = questions[len(parts) // 2 % len(questions)]
        parts += [speak(q, VOICES[len(parts) % len(VOICES)]), 28.0]
    audio, _ = compose(parts)
    mic = write_wav(tmp / "walk.wav", audio)
    env = {**os.environ, "GLASSES_AGENT_MEMORY__PATH": str(tmp / "memory.sqlite")}
    proc = subprocess.Popen([sys.executable, "-m", "glasses_agent.cli", "--config", "/dev/null",
                             "run", "--camera", str(video), "--mic", str(mic),
                             "--audio-out", str(tmp / "said.wav")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    samples: list[tuple[float, float]] = []
    start = time.monotonic()
    while proc.poll() is None and time.monotonic() - start < minutes * 60 + 120:
        samples.append((time.monotonic() - start, _rss_mb(proc.pid)))
        time.sleep(2.0)
    if proc.poll() is None:
        proc.terminate()
    _, err = proc.communicate(timeout=60)
    after_first = [mb for t, mb in samples if t >= 60]
    at_minute = after_first[0] if after_first else float("nan")
    peak = max(mb for _, mb in samples) if samples else float("nan")
    last = samples[-1][1] if samples else float("nan")
    # The resting level: each turn's working memory (OCR, the keyframe, Whisper) comes and
    # goes in a few seconds; what stays is the median of a minute's samples.
    second_minute = [mb for t, mb in samples if 60 <= t < 120]
    last_minute = [mb for t, mb in samples if t >= samples[-1][0] - 60] if samples else []
    rest_start = statistics.median(second_minute) if second_minute else float("nan")
    rest_end = statistics.median(last_minute) if last_minute else float("nan")
    return {"minutes": minutes, "exit_code": proc.returncode, "peak_rss_mb": round(peak, 1),
            "rss_at_1_min_mb": round(at_minute, 1), "rss_at_end_mb": round(last, 1),
            "growth_after_first_minute_pct": round(100 * (max(after_first) - at_minute)
                                                   / at_minute, 1) if after_first else None,
            "resting_rss_mb": {"second_minute": rest_start, "last_minute": rest_end},
            "resting_growth_pct": round(100 * (rest_end - rest_start) / rest_start, 1)
            if second_minute and last_minute else None,
            "samples": [(round(t), round(mb)) for t, mb in samples[:: max(1, len(samples) // 60)]],
            "stderr_tail": err.strip().splitlines()[-3:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=int, default=8)
    parser.add_argument("--barges", type=int, default=8)
    parser.add_argument("--ttft-ms", type=float, default=300.0)
    parser.add_argument("--rss-minutes", type=float, default=0.0,
                        help="also measure memory over this long a run (10 for the goal)")
    args = parser.parse_args()
    features = cpu_features()
    result: dict[str, Any] = {
        "machine": {"cpu": features.as_dict(), "platform": platform.machine(),
                    "cores": os.cpu_count(), "load_avg_start": os.getloadavg()[0]},
        "goals": {"device_end_to_first_audio_p50_ms": 600, "overhead_p50_ms": 150,
                  "overhead_p95_ms": 300, "barge_in_stop_p95_ms": 100, "rss_mb": 1200,
                  "rss_growth_pct": 5},
    }
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        if args.turns:
            result["turns"] = turns(tmp, args.turns, args.ttft_ms / 1000)
        if args.barges:
            result["barge_in"] = barge_ins(tmp, args.barges, args.ttft_ms / 1000)
        if args.rss_minutes:
            result["memory"] = memory(tmp, args.rss_minutes)
    result["machine"]["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
