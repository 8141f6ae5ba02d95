"""``glasses-agent demo``: the bundled scenarios, headless, on the embedded defaults.

Each scenario that ships with the simulator (``simulator/scenarios/``: read a
sign, a price, what is this, a barcode, the time and the battery, remember and
recall, an open question for the cloud, the cloud cut mid-answer, a barge-in,
privacy mode) runs through the whole edge runtime: speech synthesized in several
voices, Whisper, the camera's models, the on-device router, the gateway started
here with the embedded language model. The conversation is printed as it
happens (and spoken where there is a sound card), then a table; exit 1 if a
scenario's expectations did not hold. One to three minutes on 2 cores (70-180 s
measured on a shared 2-core machine, as other work came and went).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from glasses_agent.config import Config

__all__ = ["register", "run"]


def run(args: argparse.Namespace, config: Config) -> int:
    from simulator.cli import BUNDLED, bundled_scenarios, has_speakers, run_scenarios_cli

    count = len(list(bundled_scenarios().glob("*.toml")))
    sound = not args.silent and has_speakers()
    how = "speaking on the sound card" if sound else "no sound card: shown, not spoken"
    print(f"glasses-agent demo: {count} bundled scenarios, headless ({how}); one to "
          "three minutes on 2 cores", file=sys.stderr, flush=True)
    started = time.monotonic()
    code = run_scenarios_cli(BUNDLED, config, cloud_url=None, window=False, sound=sound)
    print(f"glasses-agent demo: done in {time.monotonic() - started:.0f} s"
          + ("" if code == 0 else "; a scenario failed (see above)"), file=sys.stderr)
    return code


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the bundled scenarios headless and print the conversations",
        description=__doc__.split("\n\n", 1)[1] if __doc__ else None,
    )
    parser.add_argument("--silent", action="store_true",
                        help="do not speak on the sound card (and run the scenarios fast)")
    parser.set_defaults(func=run)
