"""Pipecat's own Silero VAD + Whisper pipeline, fed like a live microphone (a benchmark peer).

Run by ``bench_turn_latency.py --pipecat-venv PATH`` with that virtual
environment's Python; it imports pipecat, which glasses-agent never does. It is
not part of the package and nothing of glasses-agent is imported here.

Pipeline: ``VADProcessor(SileroVADAnalyzer(VADParams(stop_secs=...)))`` ->
``WhisperSTTService`` (faster-whisper, a local CTranslate2 directory, int8 on
the CPU, Pipecat's own decoding defaults) -> a sink that stamps each
``TranscriptionFrame`` with ``time.perf_counter()`` when it arrives.

Line protocol on stdin/stdout (one JSON object per line):
  -> {"ready": true, "pipecat": "1.14.0", ...}                 once the models are loaded
  <- {"wav": "/path/file.wav", "settle_s": 1.5}                  stream one file
  -> {"t0": 0.0, "transcripts": [{"text": "...", "at_s": 2.71}, ...]}
     ``at_s`` counts from the moment the file's first sample was due: chunk i
     (512 samples, 32 ms) is queued when its last sample is due, at (i + 1) * 32 ms.
  <- {"quit": true}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from importlib.metadata import version
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local directory: never a hub

import numpy as np
import soundfile
from loguru import logger
from pipecat.audio.vad.silero import SileroVADAnalyzer
from pipecat.audio.vad.vad_analyzer import VADParams
from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, TranscriptionFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.audio.vad_processor import VADProcessor
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.services.whisper.stt import WhisperSTTService
from pipecat.workers.runner import WorkerRunner

RATE_HZ = 16_000
CHUNK = 512


class Stamp(FrameProcessor):
    """The sink: remembers each transcription with the time it arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[tuple[str, float]] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, TranscriptionFrame):
            self.heard.append((frame.text, time.perf_counter()))
        await self.push_frame(frame, direction)


async def stream(task: PipelineWorker, stamp: Stamp, path: str, settle_s: float) -> dict[str, Any]:
    audio, rate = soundfile.read(path, dtype="int16")
    if rate != RATE_HZ or audio.ndim != 1:
        raise SystemExit(f"pipecat peer: {path} is not 16 kHz mono")
    stamp.heard.clear()
    t0 = time.perf_counter() + 0.05
    n_chunks = (len(audio) + CHUNK - 1) // CHUNK
    for i in range(n_chunks):
        due = t0 + (i + 1) * CHUNK / RATE_HZ
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pcm = np.ascontiguousarray(audio[i * CHUNK:(i + 1) * CHUNK]).tobytes()
        await task.queue_frame(InputAudioRawFrame(audio=pcm, sample_rate=RATE_HZ,
                                                  num_channels=1))
    await asyncio.sleep(settle_s)  # a transcription may still be running
    return {"t0": 0.0, "transcripts": [{"text": text.strip(), "at_s": round(at - t0, 4)}
                                       for text, at in stamp.heard]}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a local CTranslate2 Whisper directory")
    parser.add_argument("--stop-secs", type=float, default=0.2)
    parser.add_argument("--compute-type", default="int8")
    args = parser.parse_args()
    logger.remove()
    logger.add(sys.stderr, level="WARNING")

    stamp = Stamp()
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=args.stop_secs)))
    stt = WhisperSTTService(settings=WhisperSTTService.Settings(model=args.model), device="cpu",
                            compute_type=args.compute_type)
    task = PipelineWorker(Pipeline([vad, stt, stamp]),
                          params=PipelineParams(audio_in_sample_rate=RATE_HZ),
                          cancel_on_idle_timeout=False)
    started = asyncio.Event()

    @task.event_handler("on_pipeline_started")
    async def _on_started(_worker: Any, _frame: Frame) -> None:
        started.set()

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(task)
    running = asyncio.create_task(runner.run())
    await asyncio.wait_for(started.wait(), timeout=30)
    print(json.dumps({"ready": True, "pipecat": version("pipecat-ai"),
                      "faster_whisper": version("faster-whisper"),
                      "vad_stop_secs": args.stop_secs, "compute_type": args.compute_type}),
          flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        request = json.loads(line)
        if request.get("quit"):
            break
        result = await stream(task, stamp, request["wav"], float(request.get("settle_s", 1.5)))
        print(json.dumps(result), flush=True)
    await task.queue_frame(EndFrame())
    await running


if __name__ == "__main__":
    asyncio.run(main())
