"""What recording a field log costs: CPU and megabytes per minute of session. Prints JSON.

The same session is run as a user runs it (``glasses-agent run --offline``: every edge
model loaded, a changing camera video with a face in view, a microphone file paced in
real time with a question every ~20 s), once without a log (the baseline) and then with
``--record``, ``--record --record-audio``, and two ways of recording less (no frames
but each turn's; frames not blurred), one after another in this run. The
figures: the child process's CPU seconds (user + system, from ``wait4``) per minute of
session, the recorder's extra CPU as a share of one core and as a ratio to the baseline,
and the log's size per minute. Start-up (loading the models) is in every run alike, so
the differences are the recorder's.

    .venv/bin/python benchmarks/bench_fieldlog.py [--minutes 1] [--repeats 1] [--modes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import cpu_flags  # noqa: E402
from support.images import photo, photograph, render_sign, write_video  # noqa: E402
from support.speech import compose, speak, write_wav  # noqa: E402

from edge_models.cpu import cpu_features  # noqa: E402

QUESTIONS = ["Hey glasses, what time is it?", "Hey glasses, read this sign.",
             "Hey glasses, what is this?", "Hey glasses, what am I looking at?"]
# Global options (before ``run``) and ``run``'s own, per mode; "--record" gets the path.
MODES: dict[str, tuple[list[str], list[str]]] = {
    "off": ([], []),
    "record": ([], ["--record"]),
    "record_audio": ([], ["--record", "--record-audio"]),
    # Where the cost goes: no sampled frames (only each turn's), and no face blurring.
    "record_turn_frames_only": (["--set", "fieldlog.camera_fps=0"], ["--record"]),
    "record_unblurred": (["--set", "fieldlog.blur_faces=false"], ["--record"]),
}


def session_media(tmp: Path, minutes: float) -> tuple[Path, Path]:
    """A camera video (signs, and a face every few frames) and a microphone file."""
    import cv2

    face = cv2.resize(photo("astronaut"), (640, 480))
    signs = [cv2.resize(photograph(render_sign([f"GATE {i}", f"Coffee ${i % 9}.{10 + i}"]),
                                   seed=i), (640, 480)) for i in range(12)]
    fps = 5.0
    count = int(minutes * 60 * fps) + 30
    frames = [face if i % 25 < 10 else signs[i // 25 % len(signs)] for i in range(count)]
    video = write_video(tmp / "walk.avi", frames, fps=fps)
    parts: list[float | np.ndarray] = [1.5]
    spoken = 1.5
    while spoken < minutes * 60 - 4:
        said = speak(QUESTIONS[len(parts) // 2 % len(QUESTIONS)])
        parts += [said, 18.0]
        spoken += len(said) / 16_000 + 18.0
    mic = write_wav(tmp / "walk.wav", compose(parts)[0])
    return video, mic


def camera_frames(log: Path) -> int:
    """How many camera frames the log kept (0: no log)."""
    if not log.exists():
        return 0
    from mcap.reader import make_reader

    with log.open("rb") as f:
        summary = make_reader(f).get_summary()
    assert summary is not None and summary.statistics is not None
    counts = summary.statistics.channel_message_counts
    return sum(counts.get(cid, 0) for cid, channel in summary.channels.items()
               if channel.topic == "/camera/image")


def run_once(tmp: Path, video: Path, mic: Path, mode: str, n: int) -> dict[str, Any]:
    log = tmp / f"{mode}-{n}.mcap"
    settings, flags = MODES[mode]
    flags = [flag if flag != "--record" else f"--record={log}" for flag in flags]
    env = {**os.environ, "GLASSES_AGENT_MEMORY__PATH": str(tmp / f"memory-{mode}-{n}.sqlite")}
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "glasses_agent.cli", "--config", "/dev/null",
                             *settings, "run", "--offline", "--camera", str(video),
                             "--mic", str(mic), "--audio-out",
                             str(tmp / f"said-{mode}-{n}.wav"), *flags],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"glasses-agent run ({mode}) exited {proc.returncode}: "
                         f"{err.strip().splitlines()[-3:]}")
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "wall_s": time.monotonic() - started,
            "log_mb": log.stat().st_size / 1e6 if log.exists() else 0.0,
            "camera_frames": camera_frames(log),
            "note": next((line for line in err.splitlines() if "field log:" in line), "")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=1.0, help="session length")
    parser.add_argument("--repeats", type=int, default=1, help="runs per mode (interleaved)")
    parser.add_argument("--modes", nargs="+", choices=[m for m in MODES if m != "off"],
                        default=[m for m in MODES if m != "off"],
                        help="the recorded modes to run (the unrecorded baseline always runs)")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in ["off", *args.modes]}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench-fieldlog-") as name:
        tmp = Path(name)
        video, mic = session_media(tmp, args.minutes)
        session_s = (mic.stat().st_size - 44) / 2 / 16_000
        for n in range(args.repeats):
            for mode in runs:
                runs[mode].append(run_once(tmp, video, mic, mode, n))
    minutes = session_s / 60
    base = float(np.median([r["cpu_s"] for r in runs["off"]]))
    result: dict[str, Any] = {
        "cpu": cpu_features().as_dict(), "flags": cpu_flags(), "machine": platform.machine(),
        "cores": os.cpu_count(), "load_before": round(load, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "session_minutes": round(minutes, 2), "repeats": args.repeats,
        "baseline_cpu_s_per_min": round(base / minutes, 2)}
    for mode in args.modes:
        cpu = float(np.median([r["cpu_s"] for r in runs[mode]]))
        result[mode] = {
            "cpu_s_per_min": round(cpu / minutes, 2),
            "extra_cpu_s_per_min": round((cpu - base) / minutes, 2),
            "extra_core_share_pct": round(100 * (cpu - base) / session_s, 1),
            "cpu_ratio_to_baseline": round(cpu / base, 3),
            "log_mb_per_min": round(float(np.median([r["log_mb"] for r in runs[mode]]))
                                    / minutes, 2),
            "camera_frames_per_min": round(float(np.median(
                [r["camera_frames"] for r in runs[mode]])) / minutes, 1),
            "note": runs[mode][-1]["note"]}
    result["runs"] = {mode: [{k: round(v, 2) if isinstance(v, float) else v
                              for k, v in r.items() if k != "note"} for r in rs]
                      for mode, rs in runs.items()}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
