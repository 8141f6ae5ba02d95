"""``glasses-agent demo``: hear the bundled sample question and print what was understood.

The sample (``glasses_agent/data/hey_glasses.wav``) goes through the always-on
path of the glasses: Silero VAD and endpointing, the wake phrase, then Whisper.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from importlib.resources import as_file, files
from typing import Any

from glasses_agent.config import Config

__all__ = ["SAMPLE", "register", "run"]

SAMPLE = "hey_glasses.wav"


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.edge.sources.audio import FileAudioSource
    from glasses_agent.edge.speech.asr import WhisperAsr
    from glasses_agent.edge.speech.cli import format_transcript, transcript_dict
    from glasses_agent.edge.speech.pipeline import build_listener, build_transcriber, run_source
    from glasses_agent.edge.speech.wake import strip_wake_phrase
    from glasses_agent.frames import Transcript, WakeDetected

    with as_file(files("glasses_agent.data").joinpath(SAMPLE)) as path:
        source = FileAudioSource(path)
        print(f"glasses-agent demo: listening to the bundled sample {SAMPLE} "
              f"({source.duration_s:.1f} s)", file=sys.stderr)
        asr = WhisperAsr(config.asr)
        wake = config.wake
        if wake.engine == "phrase":
            pipeline = build_listener(config, asr=asr)
        else:
            print(f"(wake engine {wake.engine!r}: the sample says {wake.phrase!r}? "
                  "transcribing every utterance instead)", file=sys.stderr)
            wake = dataclasses.replace(wake, engine="off")
            pipeline = build_transcriber(config, asr=asr)
        frames = list(run_source(pipeline, source))
    transcripts = [f for f in frames if isinstance(f, Transcript)]
    wakes = [f for f in frames if isinstance(f, WakeDetected)]
    if args.json:
        for t in transcripts:
            data = transcript_dict(t)
            data["question"] = strip_wake_phrase(t.text, wake.phrase)
            print(json.dumps(data))
    else:
        for w in wakes:
            print(f"wake phrase {w.phrase!r} heard (score {w.score:.2f})")
        for t in transcripts:
            print(format_transcript(t))
            print(f"question: {strip_wake_phrase(t.text, wake.phrase)}")
            print(f"recognized in {t.asr_ms:.0f} ms after the end of speech")
    if not transcripts:
        print("glasses-agent demo: nothing was heard in the sample", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="hear the bundled sample question (VAD, wake phrase, Whisper) and print it"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per transcript")
    parser.set_defaults(func=run)
