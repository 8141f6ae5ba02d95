"""``--record PATH``, ``--record-audio`` and ``--live [PORT]`` for every command that runs
the glasses (``run``, ``ask``, ``simulate``): one call adds the flags, one opens the
recorder, whose ``tap`` goes to ``build_runtime(tap=...)``.

    add_record_arguments(parser)
    ...
    with recording(args, config, command="run") as tap:
        runtime = build_runtime(config, inputs, cloud=cloud, tap=tap)
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Iterator
from typing import Any

from glasses_agent.config import Config

__all__ = ["add_record_arguments", "recording"]


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("field log (docs/field-logs.md)")
    group.add_argument("--record", metavar="PATH",
                       help="record the session to an MCAP file (a folder: a new file in it); "
                            "opens in Foxglove, replays with `glasses-agent replay`")
    group.add_argument("--record-audio", action="store_true",
                       help="also keep what the microphone heard (the wearer's voice: opt-in)")
    group.add_argument("--live", nargs="?", type=int, const=-1, metavar="PORT",
                       help="serve the same channels to Foxglove while running "
                            "(default port: fieldlog.live_port)")


@contextlib.contextmanager
def recording(args: argparse.Namespace, config: Config, *, command: str,
              to: str | None = None) -> Iterator[Any]:
    """The recorder the flags ask for (None: neither ``--record`` nor ``--live``); closed
    (the file completed) on the way out, whatever happens. ``to``: record there instead
    of ``--record`` (one file per scenario of ``simulate --scenario DIR``)."""
    if not args.record and args.live is None:
        yield None
        return
    from glasses_agent.fieldlog.recorder import Recorder

    port = None if args.live is None else (config.fieldlog.live_port if args.live < 0
                                           else args.live)
    recorder = Recorder.open(to or args.record, config, command=command, live_port=port,
                             audio=True if args.record_audio else None)
    if recorder.writer.live_port is not None:
        print(f"live view: ws://{config.fieldlog.live_host}:{recorder.writer.live_port} "
              "(Foxglove: Open connection)", file=sys.stderr, flush=True)
    try:
        yield recorder
    finally:
        path = recorder.close()
        if path is not None:
            writer = recorder.writer
            print(f"field log: {path} ({sum(writer.messages.values())} messages, "
                  f"{path.stat().st_size / 1e6:.1f} MB compressed from "
                  f"{writer.bytes_written / 1e6:.1f})", file=sys.stderr, flush=True)
