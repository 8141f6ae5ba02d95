"""``glasses-agent``: the command line.

Each command lives in its own module with ``register(subparsers)``; the module
sets ``func`` on its parser, a function of the parsed arguments and the loaded
configuration that returns an exit code. Heavy imports stay inside ``func``.
A ``GlassesError`` is printed as one line on stderr (no traceback) and sets the
exit code: 2 for bad input. Ctrl-C exits with 130 and a closed output pipe
(``| head``) with 141, as a shell reports SIGINT and SIGPIPE, without a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from glasses_agent import __version__
from glasses_agent.config import load_config
from glasses_agent.errors import GlassesError

__all__ = ["main"]

# One line per command module; each has ``register(subparsers)``.
COMMAND_MODULES = (
    "glasses_agent.commands.config_cmd",
    "glasses_agent.commands.devices",
    "glasses_agent.gateway.cli",
    "glasses_agent.edge.speech.cli",
    "glasses_agent.commands.demo",
    "glasses_agent.edge.perception.cli",
    "glasses_agent.commands.memory_cmd",
    "glasses_agent.commands.ask_cmd",
    "glasses_agent.commands.run_cmd",
    "simulator.cli",
    "glasses_agent.commands.replay_cmd",
    "glasses_agent.commands.report_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glasses-agent",
        description="An open runtime for AI smart glasses.",
    )
    parser.add_argument("--version", action="version", version=f"glasses-agent {__version__}")
    parser.add_argument("--config", metavar="PATH", help="TOML configuration file")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
        help="override one configuration value (repeatable), e.g. --set asr.model=base",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        config = load_config(args.config, overrides=args.overrides)
        code: int = args.func(args, config)
        return code
    except GlassesError as exc:
        print(f"glasses-agent {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`glasses-agent transcribe x.wav | head -1`): stop quietly.
        # Point stdout at /dev/null so the interpreter's last flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
