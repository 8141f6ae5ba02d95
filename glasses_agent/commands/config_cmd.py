"""``glasses-agent config``: print the effective configuration, secrets masked."""

from __future__ import annotations

import argparse
import json
from typing import Any

from glasses_agent.config import Config, masked_dict


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def run(args: argparse.Namespace, config: Config) -> int:
    from glasses_agent.commands.model_variants import cpu_line, model_lines, variant_report

    data: dict[str, Any] = dict(masked_dict(config))
    # The CPU and each model's variant as last decided here: read from the cache, no
    # self-check is run by this command (`glasses-agent devices` runs it).
    runtime = variant_report(config, run_check=False)
    if args.json:
        data["runtime"] = {**runtime, "note": "model variants as cached; no check was run"}
        print(json.dumps(data, indent=2))
        return 0
    for section, values in data.items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"{key} = {_toml_value(value)}")
        print()
    print(f"# CPU: {cpu_line(runtime)}")
    print("# Model variants (cached decisions; this command runs no self-check):")
    for line in model_lines(runtime):
        print(f"#   {line}")
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "config", help="print the effective configuration (secrets masked)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of TOML")
    parser.set_defaults(func=run)
