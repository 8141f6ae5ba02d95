"""Hearing pipelines: the stages put together, and a runner for audio sources.

- ``build_transcriber``: VAD + endpointing -> Whisper. Every utterance is
  transcribed (``glasses-agent transcribe``).
- ``build_listener``: VAD + endpointing (with pauses) -> wake phrase / push-to-talk
  gate -> end of turn and Whisper (``TurnStage``). Only utterances meant for the
  assistant are transcribed (the always-on path on the glasses); Whisper starts when
  a pause begins and Smart Turn judges whether the turn is over (``speech/turn.py``).

``run_source`` feeds a source's chunks through a pipeline. For a file, time is
the file's own (a ``ManualClock`` set to each chunk's end), so a run is
deterministic and independent of how fast the machine reads; for a live
microphone pass the live clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from glasses_agent.clock import Clock, ManualClock
from glasses_agent.config import Config
from glasses_agent.edge.speech.asr import AsrStage, WhisperAsr
from glasses_agent.edge.speech.turn import TurnStage, check_turn_config
from glasses_agent.edge.speech.vad import VadStage
from glasses_agent.edge.speech.wake import WakeGate, make_wake_gate
from glasses_agent.frames import AudioChunk, Frame
from glasses_agent.stages import Pipeline

__all__ = ["build_listener", "build_transcriber", "flush_pipeline", "run_source"]


def build_transcriber(config: Config, *, asr: WhisperAsr | None = None) -> Pipeline:
    """VAD + endpointing + recognition of every utterance."""
    asr = asr or WhisperAsr(config.asr)
    return Pipeline([VadStage.from_config(config.vad, config.models), AsrStage(asr)])


def build_listener(
    config: Config,
    *,
    asr: WhisperAsr | None = None,
    notice: Callable[[str], None] | None = None,
) -> Pipeline:
    """VAD + endpointing + wake/push-to-talk gate + end of turn and recognition (the
    always-on path). An incomplete turn waits ``turn.max_silence_s`` (with the engine
    "off": ``vad.min_silence_s``)."""
    turn = config.turn
    check_turn_config(turn)
    asr = asr or WhisperAsr(config.asr)
    asr.warmup()  # long-lived: the first utterance should not pay for a cold model
    gate: WakeGate = make_wake_gate(config.wake, asr=asr, models=config.models, notice=notice,
                                    early_spots=True)
    hangover_s = turn.max_silence_s if turn.engine == "smart_turn" else config.vad.min_silence_s
    vad = VadStage.from_config(config.vad, config.models, pause_s=turn.pause_s,
                               min_silence_s=hangover_s)
    recognize = TurnStage.from_config(
        turn, asr=asr, models=config.models, preroll_s=config.vad.preroll_s,
        wake_phrase=config.wake.phrase if config.wake.engine != "off" else "")
    return Pipeline([vad, gate, recognize])


def flush_pipeline(pipeline: Pipeline, now_s: float) -> list[Frame]:
    """End of input: flush each stage that can (``flush(now_s)``) through the stages after it."""
    out: list[Frame] = []
    stages = pipeline.stages
    for index, stage in enumerate(stages):
        flush = getattr(stage, "flush", None)
        if flush is None:
            continue
        frames: list[Frame] = list(flush(now_s))
        for later in stages[index + 1:]:
            frames = [f2 for f in frames for f2 in later.process(f, now_s)]
        out.extend(frames)
    return out


def run_source(
    pipeline: Pipeline,
    chunks: Iterable[Frame],
    *,
    clock: Clock | None = None,
) -> Iterator[Frame]:
    """Push every frame through ``pipeline`` and flush at the end; yields what comes out.

    Without ``clock`` the time is the audio's own: each chunk is pushed at its end time.
    """
    file_clock = ManualClock() if clock is None else None
    last_s = 0.0
    for frame in chunks:
        if file_clock is not None:
            if isinstance(frame, AudioChunk):
                last_s = max(last_s, frame.timestamp_s + frame.duration_s)
            file_clock.set(max(file_clock.now_s(), last_s))
            now_s = file_clock.now_s()
        else:
            assert clock is not None
            now_s = clock.now_s()
        last_s = now_s
        yield from pipeline.push(frame, now_s)
    now_s = last_s if clock is None else clock.now_s()
    yield from flush_pipeline(pipeline, now_s)
