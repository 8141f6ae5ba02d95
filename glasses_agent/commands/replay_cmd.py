"""``glasses-agent replay LOG [--json]``: a field log through the current pipeline.

The recorded audio (when the tester kept it) goes through a fresh listener and the
recorded camera frames through the current perception, on a manual clock, with the
session's own settings; the router decides again with the device's state as it was;
the cloud's replies come from the log (no network). Each turn is compared with the
recorded one (question, route, answer) and the differences are printed. Exit 0 when
the replay matches the recording, 1 when something differs (a regression, or a change
to look at), 2 for a log that cannot be read. ``--set section.key=value`` (before
``replay``) changes a setting on top of the session's; ``--current-config`` uses this
machine's configuration instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from glasses_agent.config import Config

__all__ = ["register", "run"]


def _config(args: argparse.Namespace, config: Config, session: dict[str, Any]) -> Config:
    """The session's configuration with this command line's ``--set`` on top (or, with
    ``--current-config``, the effective one here)."""
    import dataclasses

    from glasses_agent.config import load_config
    from glasses_agent.fieldlog.replay import config_from_record

    if args.current_config:
        return config
    base = config_from_record(session.get("config") or {})
    overrides = load_config("/dev/null", environ={}, overrides=args.overrides)  # checked
    for item in args.overrides:
        section, _, key = item.partition("=")[0].strip().partition(".")
        value = getattr(getattr(overrides, section), key)
        base = dataclasses.replace(base, **{section: dataclasses.replace(
            getattr(base, section), **{key: value})})
    return base


def _show(result: Any) -> None:
    print(f"replay of {result.log} ("
          + ("the recorded audio through the listener" if result.audio_replayed
             else "the recorded transcripts") + "; cloud replies from the log)")
    for note in result.notes:
        print(f"note: {note}")
    for turn in result.turns:
        shown = turn.replayed or turn.recorded
        mark = "differs" if turn.differences else "same"
        print(f"{turn.index:>3}  {shown.question[:48]:<48} {shown.kind}/{shown.rule} "
              f"-> {shown.route}: {shown.answer[:60]}   [{mark}]")
        for difference in turn.differences:
            print(f"       {difference}")
    count = result.differences
    print(f"{len(result.turns)} turns, {count} difference(s)"
          + (": exit 1" if count else ": the replay matches the recording"))


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.fieldlog.reading import read_log
    from glasses_agent.fieldlog.replay import replay

    log = read_log(args.log, progress=True)
    if log.note:
        print(log.note, file=sys.stderr)
    result = replay(log, _config(args, config, log.session), progress=True)
    if args.json:
        print(json.dumps(result.as_dict()))
    else:
        _show(result)
    return 1 if result.regression else 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "replay", help="replay a field log through the current pipeline and compare",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("log", metavar="LOG", help="a field log (MCAP) from --record")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object: every turn recorded and replayed, differences")
    parser.add_argument("--current-config", action="store_true",
                        help="this machine's configuration instead of the session's")
    parser.set_defaults(func=run)
