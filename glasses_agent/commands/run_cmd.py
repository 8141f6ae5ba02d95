"""``glasses-agent run --camera SRC --mic SRC [--cloud URL | --offline]``: the glasses,
running: always listening, seeing, answering, speaking, until Ctrl-C (or, for a
microphone file, until it has been heard and answered).

SRC is a device (a webcam index; a microphone's index or part of its name) or a
file (a video, an image, a folder of images; a WAV, FLAC, ... file). A file given
as ``--mic`` is paced as a live microphone would deliver it, unless ``--fast``.
The conversation is printed as it happens; ``--events PATH`` (``-``: stdout)
writes every runtime event as a JSON line (state, LED, link, heard, decided,
answer text, barge-in, per-turn timings) for outside harnesses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
from typing import IO, Any

from glasses_agent.commands._record import add_record_arguments
from glasses_agent.config import Config
from glasses_agent.errors import BadInputError

__all__ = ["add_glasses_arguments", "parse_location", "register", "run"]


def parse_location(text: str | None) -> tuple[float, float] | None:
    """``--location LAT,LON`` as (latitude, longitude); None when not given."""
    if not text:
        return None
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError as exc:
        raise BadInputError(f"--location {text!r}: expected LAT,LON (e.g. 48.8584,2.2945)"
                            ) from exc
    if not (-90 <= lat <= 90 and -180 <= lon <= 180):
        raise BadInputError(f"--location {text!r}: latitude -90..90, longitude -180..180")
    return lat, lon


class _Printer:
    """The conversation on stdout (and every event as JSON to ``--events``)."""

    def __init__(self, events: IO[str] | None, quiet: bool) -> None:
        self.events = events
        self.quiet = quiet

    def __call__(self, event: Any) -> None:
        from glasses_agent.edge.events import Answered, BargedIn, Decided, Heard, event_dict

        if self.events is not None:
            self.events.write(json.dumps(event_dict(event)) + "\n")
            self.events.flush()
        if self.quiet:
            return
        if isinstance(event, Heard) and event.question:
            print(f"you:     {event.question}", flush=True)
        elif isinstance(event, Decided):
            print(f"         ({event.kind} by {event.rule}: {event.reason})", flush=True)
        elif isinstance(event, Answered):
            print(f"glasses: {event.text}   [{event.route}]", flush=True)
        elif isinstance(event, BargedIn):
            print(f"         (interrupted after {event.heard_chars} characters, stopped in "
                  f"{event.stop_ms:.0f} ms)", flush=True)


async def _run(args: argparse.Namespace, config: Config, events: IO[str] | None) -> int:
    from glasses_agent.commands._cloud import cloud_for
    from glasses_agent.commands._record import recording
    from glasses_agent.edge.build import Inputs, build_runtime
    from glasses_agent.edge.runtime import RuntimeOptions

    options = RuntimeOptions(location=parse_location(args.location),
                             battery_percent=args.battery, follow_up_s=args.follow_up)
    inputs = Inputs(camera=None if args.no_camera else (args.camera or config.camera.source),
                    mic=args.mic or "", audio_out=args.audio_out, fast=args.fast)
    async with cloud_for(config, url=args.cloud, offline=args.offline) as cloud:
        with recording(args, config, command="run") as tap:
            runtime = build_runtime(config, inputs, cloud=cloud, options=options,
                                    on_event=_Printer(events, quiet=args.events == "-"), tap=tap)
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, runtime.stop)
            results = await runtime.run()
    print(f"glasses-agent run: {len(results)} question(s) answered", file=sys.stderr)
    return 0


def run(args: argparse.Namespace, config: Config) -> int:
    if args.cloud and args.offline:
        raise BadInputError("give --cloud URL or --offline, not both")
    if args.events in (None, "-"):
        return asyncio.run(_run(args, config, sys.stdout if args.events == "-" else None))
    try:
        with open(args.events, "w", encoding="utf-8") as events:
            return asyncio.run(_run(args, config, events))
    except OSError as exc:
        raise BadInputError(f"cannot write the events file {args.events}: {exc}") from exc


def add_glasses_arguments(parser: argparse.ArgumentParser) -> None:
    """What every command that runs the glasses takes (``run`` and ``simulate``): the
    camera, the microphone, the cloud, where speech and events go, the phone link's fix,
    the battery, the follow-up window."""
    parser.add_argument("--camera", metavar="SRC",
                        help="webcam index, video, image or folder (default: camera.source)")
    parser.add_argument("--no-camera", action="store_true", help="run without a camera")
    parser.add_argument("--mic", metavar="SRC",
                        help="microphone index or name, or an audio file played as the "
                             "wearer's voice (default: audio.input_device)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cloud", metavar="URL",
                       help="the gateway (token from [cloud]); default: one started here with "
                            "the embedded model")
    where.add_argument("--offline", action="store_true", help="no cloud: the device only")
    parser.add_argument("--audio-out", metavar="PATH",
                        help="write what is spoken to a WAV file instead of the speakers")
    parser.add_argument("--events", metavar="PATH",
                        help="every runtime event as a JSON line (- for stdout)")
    parser.add_argument("--location", metavar="LAT,LON",
                        help="where the glasses are (the phone link's fix)")
    parser.add_argument("--battery", type=float, metavar="PERCENT", help="battery level")
    parser.add_argument("--follow-up", type=float, default=0.0, metavar="S",
                        help="after an answer, take speech within S seconds as a question "
                             "without the wake phrase (default: off)")


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "run", help="the glasses, running: listen, see, answer and speak (Ctrl-C to stop)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    add_glasses_arguments(parser)
    parser.add_argument("--fast", action="store_true",
                        help="read a --mic file as fast as possible, not in real time")
    add_record_arguments(parser)
    parser.set_defaults(func=run)
