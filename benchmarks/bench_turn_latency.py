"""End of speech -> final transcript, as the wearer waits it: prints one JSON object.

A held-out set of questions (espeak-ng and flite voices, some with noise mixed in,
some with pauses inside the sentence; never used to tune anything) is made in the
run. Each file is streamed like a live microphone: 32 ms chunks (512 samples), each
pushed when its last sample is due by the wall clock, through

- ``ours``: the always-on listener as configured (``build_listener``: VAD with pauses,
  wake phrase, Smart Turn + speculative Whisper, ``speech/turn.py``);
- ``before``: the listener as it was before the end-of-turn work (Silero, hangover
  ``vad.min_silence_s`` 0.5 s, wake phrase, Whisper on the full 30 s window after the
  endpoint), the same models;
- ``pipecat`` (with ``--pipecat-venv PATH``): Pipecat's own Silero VAD (stop_secs 0.2)
  + WhisperSTTService (faster-whisper, tiny.en int8 from the same local directory) in
  a subprocess of that virtual environment (``pipecat_turn_peer.py``), a peer, never
  a dependency.

The three take turns file by file (the order rotates), so the machine's load falls on
all of them alike. Latency: from the true end of speech in the file (the clean
synthesized clip's last 10 ms frame within 35 dB of its peak) to the moment the file's
last transcript came out, on the wall clock. WER: word errors over reference words, of
all the file's transcripts joined (a transcript that ``revises`` the one before it
replaces it: the wearer went on after a pause taken for the end, and the turn was
re-opened; ``revised`` counts these). ``ratio``: ours / pipecat.

Make the peer's environment (once; pipecat-ai 1.14.0 and its Silero + Whisper extras)::

    python3.11 -m venv /tmp/pipecat-venv
    /tmp/pipecat-venv/bin/pip install "pipecat-ai[silero,whisper]==1.14.0"

Usage: ``.venv/bin/python benchmarks/bench_turn_latency.py [--pipecat-venv /tmp/pipecat-venv]
[--set turn.engine=off ...] [--only ours]``. About 1 minute per system on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from support.speech import speak  # noqa: E402 - the tests' speech and voices

from glasses_agent.config import Config, load_config
from glasses_agent.edge.speech.asr import AsrStage, WhisperAsr
from glasses_agent.edge.speech.pipeline import build_listener
from glasses_agent.edge.speech.text import words_of
from glasses_agent.edge.speech.vad import VadStage
from glasses_agent.edge.speech.wake import make_wake_gate
from glasses_agent.errors import BadInputError
from glasses_agent.frames import AudioChunk, Frame, Transcript
from glasses_agent.stages import Pipeline

RATE_HZ = 16_000
CHUNK = 512
LEAD_S = 0.8
TAIL_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """A question: ``|`` marks a pause of ``pause_s`` inside it; ``noise`` "pink"/"brown"."""

    text: str
    voice: str
    pause_s: float = 0.0
    noise: str = ""
    snr_db: float = 0.0


# Held out: none of these sentences was used to choose a threshold or a setting.
HELD_OUT = (
    Item(text="hey glasses, how late is the pharmacy open?", voice="en-us"),
    Item(text="hey glasses, what does this sign say?", voice="slt"),
    Item(text="hey glasses, translate this menu for me", voice="en-gb", noise="pink",
         snr_db=15.0),
    Item(text="hey glasses, remind me to | call the dentist tomorrow", voice="rms",
         pause_s=0.7),
    Item(text="hey glasses, is there a bus stop near here?", voice="en-us+f3"),
    Item(text="hey glasses, how much is this bottle of wine?", voice="awb", noise="brown",
         snr_db=12.0),
    Item(text="hey glasses, what's the | um | the name of this bridge?", voice="en-us",
         pause_s=0.6),
    Item(text="hey glasses, read the label on this box", voice="slt", noise="pink",
         snr_db=18.0),
    Item(text="hey glasses, which platform does the next train leave from?", voice="en-gb"),
    Item(text="hey glasses, set a timer for | ten minutes", voice="en-us+f3", pause_s=0.6),
)
# For choosing settings (``--items dev``): other sentences, the same kinds of voice and noise.
DEV = (
    Item(text="hey glasses, what is the weather like today?", voice="en-gb"),
    Item(text="hey glasses, how far is the train station?", voice="rms"),
    Item(text="hey glasses, who painted this picture?", voice="en-us", noise="pink",
         snr_db=15.0),
    Item(text="hey glasses, remind me to | buy milk", voice="slt", pause_s=0.6),
    Item(text="hey glasses, what's the | um | the name of this street?", voice="en-gb",
         pause_s=0.6),
    Item(text="hey glasses, is this shop open on sundays?", voice="awb"),
    Item(text="hey glasses, find me a coffee shop nearby", voice="en-us+f3", noise="brown",
         snr_db=12.0),
    Item(text="hey glasses, call my brother and | tell him I'm late", voice="en-us",
         pause_s=0.7),
    Item(text="hey glasses, what does this word mean?", voice="slt"),
    Item(text="hey glasses, take a photo of this", voice="rms", noise="pink", snr_db=18.0),
)
WARMUP = Item(text="hey glasses, what time is it?", voice="en-us")


def active_frames(audio: np.ndarray, below_peak_db: float = 35.0) -> np.ndarray:
    frames = audio[: len(audio) // 160 * 160].reshape(-1, 160).astype(np.float64)
    db = 20 * np.log10(np.sqrt((frames ** 2).mean(axis=1)) + 1e-10)
    return np.asarray(db > db.max() - below_peak_db)


def colored_noise(n: int, kind: str, seed: int) -> np.ndarray:
    """Pink (1/f) or brown (1/f^2) noise, unit power."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.normal(size=n))
    f = np.maximum(np.fft.rfftfreq(n, 1 / RATE_HZ), 20.0)
    spectrum /= np.sqrt(f) if kind == "pink" else f
    noise = np.fft.irfft(spectrum, n)
    return np.asarray(noise / np.sqrt((noise ** 2).mean()), dtype=np.float64)


def make_item(item: Item, tmp: Path, seed: int) -> tuple[np.ndarray, float, str]:
    """(16 kHz audio with LEAD_S before and TAIL_S after, true end of speech s, reference)."""
    parts = [p.strip() for p in item.text.split("|")]
    reference = " ".join(parts)
    speech = speak(", ".join(parts), item.voice)
    active = active_frames(speech)
    first, last = int(np.flatnonzero(active)[0]), int(np.flatnonzero(active)[-1])
    if len(parts) > 1:
        # The synthesizer's comma pauses (the longest gaps), stretched to pause_s each.
        gaps, i = [], first
        while i <= last:
            if not active[i]:
                j = i
                while not active[j]:
                    j += 1
                gaps.append((i, j))
                i = j
            else:
                i += 1
        cut = sorted(sorted(gaps, key=lambda g: g[1] - g[0])[-(len(parts) - 1):])
        pieces, at = [], first * 160
        for a, b in cut:
            pieces += [speech[at:a * 160], np.zeros(round(item.pause_s * RATE_HZ), np.float32)]
            at = b * 160
        pieces.append(speech[at:(last + 1) * 160])
        speech = np.concatenate(pieces)
    else:
        speech = speech[first * 160:(last + 1) * 160]
    end_s = LEAD_S + len(speech) / RATE_HZ
    audio = np.concatenate([np.zeros(round(LEAD_S * RATE_HZ), np.float32), speech,
                            np.zeros(round(TAIL_S * RATE_HZ), np.float32)]).astype(np.float64)
    if item.noise:
        voiced = speech[np.abs(speech) > 1e-4].astype(np.float64)
        level = np.sqrt((voiced ** 2).mean() / 10 ** (item.snr_db / 10))
        audio = audio + level * colored_noise(len(audio), item.noise, seed)
    audio = np.clip(audio, -1.0, 1.0).astype(np.float32)
    return audio, end_s, reference


def stream(pipeline: Pipeline, audio: np.ndarray) -> tuple[list[tuple[Transcript, float, float]],
                                                             float]:
    """Push ``audio`` as a live microphone would; (transcript, wall s, audio s) for each,
    counted from the moment the first sample was due; and this process's CPU seconds."""
    out: list[tuple[Transcript, float, float]] = []
    n_chunks = (len(audio) + CHUNK - 1) // CHUNK
    cpu0 = time.process_time()
    t0 = time.perf_counter() + 0.05
    for i in range(n_chunks):
        due_s = (i + 1) * CHUNK / RATE_HZ
        delay = t0 + due_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        chunk = AudioChunk(timestamp_s=i * CHUNK / RATE_HZ,
                           samples=audio[i * CHUNK:(i + 1) * CHUNK], sample_rate_hz=RATE_HZ)
        frames: list[Frame] = pipeline.push(chunk, due_s)
        at = time.perf_counter() - t0
        out += [(f, at, due_s) for f in frames if isinstance(f, Transcript)]
    return out, time.process_time() - cpu0


def build_before(config: Config, asr: WhisperAsr) -> Pipeline:
    """The listener as it was: hangover vad.min_silence_s, Whisper after the endpoint."""
    gate = make_wake_gate(config.wake, asr=asr, models=config.models)
    return Pipeline([VadStage.from_config(config.vad, config.models), gate, AsrStage(asr)])


class Peer:
    """``pipecat_turn_peer.py`` in the Pipecat virtual environment."""

    def __init__(self, venv: Path, model_dir: Path) -> None:
        python = venv / "bin" / "python"
        if not python.is_file():
            raise BadInputError(f"--pipecat-venv {venv}: no bin/python there (make it as the "
                                "docstring of benchmarks/bench_turn_latency.py says)")
        peer = Path(__file__).with_name("pipecat_turn_peer.py")
        self.proc = subprocess.Popen(
            [str(python), str(peer), "--model", str(model_dir)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})
        self.info = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BadInputError("the pipecat peer stopped (is pipecat-ai[silero,whisper]==1.14.0 "
                                "installed in --pipecat-venv?)")
        data: dict[str, Any] = json.loads(line)
        return data

    def stream(self, path: Path) -> list[tuple[str, float]]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"wav": str(path), "settle_s": 1.2}) + "\n")
        self.proc.stdin.flush()
        return [(t["text"], float(t["at_s"])) for t in self._read()["transcripts"]]

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.write(json.dumps({"quit": True}) + "\n")
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


def errors(reference: str, hypothesis: str) -> int:
    from glasses_agent.edge.speech.text import edit_distance

    return edit_distance(words_of(reference), words_of(hypothesis))


def pct(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 1) if values else float("nan")


def cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
              "asimddp", "sve")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    line = next((ln for ln in text.splitlines() if ln.startswith(("flags", "Features"))), "")
    have = set(line.partition(":")[2].split())
    return [f for f in wanted if f in have]


def summary(rows: list[dict[str, Any]], words: int) -> dict[str, Any]:
    latency = [r["latency_ms"] for r in rows if r["latency_ms"] is not None]
    errs = sum(r["errors"] for r in rows)
    out = {"p50_ms": pct(latency, 50), "p95_ms": pct(latency, 95),
           "max_ms": round(max(latency), 1) if latency else None,
           "word_errors": errs, "words": words, "wer": round(errs / words, 3),
           "answered": len(latency), "split": sum(r["transcripts"] > 1 for r in rows),
           "revised": sum(r.get("revised", 0) for r in rows)}
    if rows and "smart_turn_calls" in rows[0]:
        out["smart_turn_calls"] = sum(r["smart_turn_calls"] for r in rows)
        out["speculations"] = sum(r["speculations"] for r in rows)
    return out


def silence_cost(pipeline_factory: Callable[[], Pipeline], seconds: float) -> dict[str, Any]:
    rng = np.random.default_rng(3)
    room = rng.normal(0, 10 ** (-60 / 20), round(seconds * RATE_HZ)).astype(np.float32)
    pipeline = pipeline_factory()
    wall0 = time.perf_counter()
    _, cpu = stream(pipeline, room)
    wall = time.perf_counter() - wall0
    return {"audio_s": seconds, "cpu_percent_of_one_core": round(100 * cpu / wall, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipecat-venv", type=Path, help="a virtual environment with "
                        "pipecat-ai[silero,whisper]==1.14.0 (a peer, never a dependency)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a setting for 'ours' (e.g. turn.engine=off)")
    parser.add_argument("--only", choices=("ours", "before", "pipecat"), action="append",
                        help="run only these systems (repeatable)")
    parser.add_argument("--items", choices=("held_out", "dev"), default="held_out",
                        help="the held-out set (the figures) or the set settings were chosen on")
    parser.add_argument("--silence-s", type=float, default=20.0,
                        help="seconds of room silence for the always-on cost (0 = skip)")
    args = parser.parse_args()
    try:
        for tool in ("espeak-ng", "flite", "sox"):
            if shutil.which(tool) is None:
                raise BadInputError(f"needs {tool} (apt-get install {tool})")
        config = load_config(overrides=args.set)
        systems = args.only or ["ours", "before"] + (["pipecat"] if args.pipecat_venv else [])
        if "pipecat" in systems and not args.pipecat_venv:
            raise BadInputError("--only pipecat needs --pipecat-venv PATH")
        load_start = os.getloadavg()
        asr = WhisperAsr(config.asr)
        before_config = replace(config, asr=replace(config.asr, encoder_window_s=0.0))
        before_asr = (WhisperAsr(before_config.asr, directory=asr.directory)
                      if config.asr.encoder_window_s else asr)
        peer = Peer(args.pipecat_venv, asr.directory) if "pipecat" in systems else None
    except BadInputError as exc:
        print(f"bench_turn_latency: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    items = HELD_OUT if args.items == "held_out" else DEV
    asr.warmup()
    before_asr.warmup()
    rows: dict[str, list[dict[str, Any]]] = {s: [] for s in systems}
    words = 0
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        made = [make_item(item, tmp, seed) for seed, item in enumerate((WARMUP, *items))]
        paths = []
        for index, (audio, _, _) in enumerate(made):
            path = tmp / f"q{index}.wav"
            soundfile.write(str(path), audio, RATE_HZ, subtype="PCM_16")
            paths.append(path)
            made[index] = (soundfile.read(str(path), dtype="float32")[0], *made[index][1:])
        for index, ((audio, end_s, reference), path) in enumerate(zip(made, paths, strict=True)):
            warm = index == 0
            if not warm:
                words += len(words_of(reference))
            order = systems[(index % len(systems)):] + systems[:(index % len(systems))]
            for system in order:
                if system == "pipecat":
                    assert peer is not None
                    heard = peer.stream(path)
                    texts, times, audio_times = ([t for t, _ in heard], [a for _, a in heard],
                                                 [None for _ in heard])
                    extra: dict[str, Any] = {}
                else:
                    pipeline = (build_listener(config, asr=asr) if system == "ours"
                                else build_before(before_config, before_asr))
                    got, _ = stream(pipeline, audio)
                    revised = sum(t.revises for t, _, _ in got)
                    # a transcript that revises the one before is the whole turn again
                    got = [g for i, g in enumerate(got)
                           if i + 1 == len(got) or not got[i + 1][0].revises]
                    texts = [t.text for t, _, _ in got]
                    times = [a for _, a, _ in got]
                    audio_times = [round(d - end_s, 3) for _, _, d in got]
                    turn = pipeline.stages[-1]
                    extra = {"asr_ms": [t.asr_ms for t, _, _ in got], "revised": revised}
                    if system == "ours":
                        model = getattr(turn, "turn", None)
                        extra["speculations"] = getattr(turn, "speculations", 0)
                        extra["smart_turn_calls"] = getattr(model, "calls", 0)
                        extra["checks"] = [
                            {"speech_end_s": round(c.speech_end_s - end_s, 3),
                             "silence_s": c.silence_s, "text": c.text, "verdict": c.verdict,
                             "p": None if c.probability is None else round(c.probability, 3),
                             "ended": c.ended} for c in getattr(turn, "checks", ())]
                if warm:
                    continue
                joined = " ".join(texts)
                rows[system].append({
                    "item": index, "voice": items[index - 1].voice, "text": joined,
                    "reference": reference, "errors": errors(reference, joined),
                    "transcripts": len(texts),
                    "latency_ms": round((times[-1] - end_s) * 1000, 1) if times else None,
                    "endpoint_audio_s_after_end": audio_times[-1] if audio_times else None,
                    **extra,
                })
    result: dict[str, Any] = {
        "benchmark": "turn_latency",
        "machine": {"cpus": os.cpu_count(), "cpu_flags": cpu_flags(),
                    "loadavg_1m_at_start": round(load_start[0], 2)},
        "config": {"turn": {k: getattr(config.turn, k) for k in config.turn.__slots__},
                   "min_silence_s_before": config.vad.min_silence_s,
                   "encoder_window_s": config.asr.encoder_window_s,
                   "pipecat": peer.info if peer else None},
        "items": f"{args.items} ({len(items)})", "words": words,
        "systems": {s: summary(r, words) for s, r in rows.items()},
        "rows": rows,
    }
    if peer is not None:
        peer.close()
    if "pipecat" in rows and "ours" in rows:
        p, o = result["systems"]["pipecat"], result["systems"]["ours"]
        result["ratio_ours_over_pipecat"] = {"p50": round(o["p50_ms"] / p["p50_ms"], 3),
                                             "p95": round(o["p95_ms"] / p["p95_ms"], 3)}
        result["targets"] = {
            "p50<=0.5x_pipecat": o["p50_ms"] <= 0.5 * p["p50_ms"],
            "p95<=0.6x_pipecat": o["p95_ms"] <= 0.6 * p["p95_ms"],
            "wer<=before": ("before" in result["systems"]
                            and o["word_errors"] <= result["systems"]["before"]["word_errors"]),
        }
    if args.silence_s > 0:
        result["always_on_silence"] = silence_cost(lambda: build_listener(config, asr=asr),
                                                   args.silence_s)
    result["machine"]["loadavg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
