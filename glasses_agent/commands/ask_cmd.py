"""``glasses-agent ask --image PATH --audio PATH``: one turn, for scripts and tests.

The image is what the camera sees, the audio is the question (taken whole: no wake
phrase needed). The turn goes through the same runtime as ``glasses-agent run``:
hearing, perception, the router, the cloud (a gateway given with ``--cloud``, none
with ``--offline``, else one started in this process with the embedded model),
speaking. ``--json`` prints one object: ``transcript``, ``question``, ``route``
(``device``, ``cloud`` or ``offline``), ``rule``, ``reason``, ``answer``,
``keyframe_bytes`` and ``latency_ms`` by stage (``asr``, ``perception``, ``route``,
``first_token``, ``first_audio``, ``total``), each from the end of the wearer's
speech. Bad input (a missing file, an image that is not an image, audio without
speech) is exit 2 and one line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from glasses_agent.commands._record import add_record_arguments
from glasses_agent.config import Config
from glasses_agent.errors import BadInputError

__all__ = ["register", "run"]


def _check_inputs(image: Path, audio: Path) -> None:
    """Before any model loads: both files there and of the right kind."""
    from glasses_agent.edge.sources.audio import probe_audio_file
    from glasses_agent.edge.sources.camera import read_image

    read_image(image)
    probe_audio_file(audio)


async def _ask(args: argparse.Namespace, config: Config) -> dict[str, Any]:
    from glasses_agent.commands._cloud import cloud_for
    from glasses_agent.commands._record import recording
    from glasses_agent.edge.build import Inputs, build_runtime

    inputs = Inputs(camera=str(args.image), mic=str(args.audio), audio_out=args.tts_out,
                    fast=True, silent=True)
    async with cloud_for(config, url=args.cloud, offline=args.offline) as cloud:
        with recording(args, config, command="ask") as tap:
            runtime = build_runtime(config, inputs, cloud=cloud, tap=tap)
            runtime.hearing.arm_follow_up(float("inf"))  # the whole file is the question
            results = await runtime.run()
    if not results:
        raise BadInputError(f"no speech found in {args.audio}")
    turn = results[0]
    decided, answered, timings = turn.decided, turn.answered, turn.timings
    return {
        "transcript": turn.heard.text,
        "question": turn.heard.question,
        "route": answered.route if answered is not None else "",
        "rule": decided.rule if decided is not None else "",
        "reason": decided.reason if decided is not None else "",
        "answer": answered.text if answered is not None else "",
        "keyframe_bytes": turn.keyframe_bytes,
        "latency_ms": {} if timings is None else {
            "asr": timings.asr_ms, "perception": timings.perception_ms,
            "route": timings.route_ms, "first_token": timings.first_token_ms,
            "first_audio": timings.first_audio_ms, "total": timings.total_ms,
        },
    }


def run(args: argparse.Namespace, config: Config) -> int:
    if args.cloud and args.offline:
        raise BadInputError("give --cloud URL or --offline, not both")
    _check_inputs(Path(args.image), Path(args.audio))
    result = asyncio.run(_ask(args, config))
    if args.json:
        print(json.dumps(result))
        return 0
    latency = result["latency_ms"]
    print(f"heard:  {result['transcript']}")
    print(f"route:  {result['route']} ({result['rule']}: {result['reason']})")
    print(f"answer: {result['answer']}")
    if latency:
        print("latency from the end of speech: " + ", ".join(
            f"{stage} {ms:.0f} ms" for stage, ms in latency.items() if ms), file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ask", help="one turn: a photo and a spoken question in, the answer out",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--image", required=True, metavar="PATH",
                        help="what the camera sees (JPEG, PNG, ...)")
    parser.add_argument("--audio", required=True, metavar="PATH",
                        help="the spoken question (WAV, FLAC, ...)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cloud", metavar="URL",
                       help="a gateway (ws:// or wss://; the token from [cloud]); default: one "
                            "started here with the embedded model")
    where.add_argument("--offline", action="store_true",
                       help="no cloud: answer on the device only")
    parser.add_argument("--tts-out", metavar="PATH", help="write the spoken answer (WAV)")
    parser.add_argument("--json", action="store_true", help="one JSON object")
    add_record_arguments(parser)
    parser.set_defaults(func=run)
