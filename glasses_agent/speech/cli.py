"""``glasses-agent transcribe PATH``: one line per utterance (or one JSON object per line).

The file is checked before any model loads, so bad input (missing, empty,
truncated, not audio) is a quick one-line error with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Iterable
from typing import Any

from glasses_agent.config import Config
from glasses_agent.frames import Frame, Transcript, WakeDetected

__all__ = ["format_transcript", "print_frames", "register", "run", "transcript_dict"]


def transcript_dict(transcript: Transcript) -> dict[str, Any]:
    return {
        "text": transcript.text,
        "start_s": transcript.start_s,
        "end_s": transcript.end_s,
        "asr_ms": transcript.asr_ms,
        "language": transcript.language,
        "words": [
            {"text": w.text, "start_s": w.start_s, "end_s": w.end_s, "probability": w.probability}
            for w in transcript.words
        ],
    }


def format_transcript(transcript: Transcript) -> str:
    return f"[{transcript.start_s:6.2f} - {transcript.end_s:6.2f}] {transcript.text}"


def print_frames(frames: Iterable[Frame], *, as_json: bool, show_wake: bool = False) -> int:
    """Print each transcript as it comes; return how many there were."""
    count = 0
    for frame in frames:
        if isinstance(frame, Transcript):
            count += 1
            line = json.dumps(transcript_dict(frame)) if as_json else format_transcript(frame)
            print(line, flush=True)
        elif show_wake and isinstance(frame, WakeDetected) and not as_json:
            print(f"(wake phrase {frame.phrase!r} heard at {frame.timestamp_s:.2f} s, "
                  f"score {frame.score:.2f})", flush=True)
    return count


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.sources.audio import FileAudioSource

    source = FileAudioSource(args.path)  # checks the file before any model loads
    asr_config = config.asr
    if args.model:
        asr_config = dataclasses.replace(asr_config, model=args.model)
    if args.language is not None:
        asr_config = dataclasses.replace(asr_config, language=args.language)
    config = dataclasses.replace(config, asr=asr_config)

    from glasses_agent.speech.asr import WhisperAsr
    from glasses_agent.speech.pipeline import build_transcriber, run_source

    asr = WhisperAsr(config.asr)
    pipeline = build_transcriber(config, asr=asr)
    count = print_frames(run_source(pipeline, source), as_json=args.json)
    if count == 0:
        print(f"glasses-agent transcribe: no speech found in {args.path} "
              f"({source.duration_s:.1f} s of audio)", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "transcribe",
        help="transcribe an audio file (WAV, FLAC, ...): one line per utterance",
        description="Find the utterances in an audio file (Silero VAD) and transcribe each "
                    "with Whisper on this device (faster-whisper, int8). Any sample rate, bit "
                    "depth and channel count; resampled to 16 kHz mono.",
    )
    parser.add_argument("path", metavar="PATH", help="audio file (WAV, FLAC, OGG, ...)")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object per line: text, start_s, end_s, asr_ms, words, ...")
    parser.add_argument("--model", choices=("tiny.en", "base"),
                        help="tiny.en (English, default) or base (multilingual; needs the "
                             "'multilingual' extra)")
    parser.add_argument("--language", metavar="XX",
                        help="language code for --model base (e.g. de, fr); default: detect")
    parser.set_defaults(func=run)
