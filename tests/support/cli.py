"""Run the command-line tools in a fresh interpreter, and check how they fail."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path


def run_agent(*args: str, config: Path | str | None = None,
                  env: Mapping[str, str] | None = None,
                  timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``glasses-agent ARGS`` as a user would; ``config=None`` leaves the config alone."""
    command = [sys.executable, "-m", "glasses_agent.cli"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run([*command, *args], capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ if env is None else env))


def run_models(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``glasses-models ARGS``."""
    return subprocess.run([sys.executable, "-m", "edge_models.cli", *args],
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], prefix: str,
                          *words: str) -> str:
    """A usage error: exit 2, nothing on stdout, one line on stderr naming the problem."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == "", proc.stdout
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(prefix), lines[0]
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]
