"""``glasses-agent report LOG [LOG2] [--out DIR] [--json]``: what happened in a field log.

A turn table (question, route, answer, latency by stage), latency percentiles per
stage, cloud-link outages, and plots of latency per turn and over time, written to
DIR as ``index.html`` (open it in a browser), ``report.json`` and PNGs. With two logs
(A/B: before and after a change) the same side by side, with B/A ratios. The tables
are also printed; ``--json`` prints the JSON instead. A log cut off by a crash is
reported up to where it ends, with a note.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from glasses_agent.config import Config

__all__ = ["register", "run"]


def _out_dir(args: argparse.Namespace) -> Path:
    if args.out:
        return Path(args.out).expanduser()
    first = Path(args.log).expanduser()
    name = first.stem + (f"-vs-{Path(args.log2).stem}" if args.log2 else "") + "-report"
    return first.parent / name


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.errors import BadInputError
    from glasses_agent.fieldlog.report import build_report, text_report, write_report

    paths = [args.log] + ([args.log2] if args.log2 else [])
    report = build_report(paths, progress=True)
    for log in report.logs:
        for note in log.notes:
            print(note, file=sys.stderr)
    out = _out_dir(args)
    try:
        files = write_report(report, out)
    except OSError as exc:
        raise BadInputError(f"cannot write the report to {out}: {exc}") from exc
    if args.json:
        print(json.dumps(report.as_dict()))
    else:
        print(text_report(report), end="")
    print(f"report: {files['html']}", file=sys.stderr)
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report", help="turns, latency by stage, link outages and plots of a field log (A/B)",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("log", metavar="LOG", help="a field log (MCAP) from --record")
    parser.add_argument("log2", metavar="LOG2", nargs="?",
                        help="a second log, shown beside the first (A/B)")
    parser.add_argument("--out", metavar="DIR",
                        help="where to write index.html, report.json and the plots "
                             "(default: LOG-report beside the log)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.set_defaults(func=run)
