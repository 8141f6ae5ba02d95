"""The user's cache folder, and small JSON files in it written atomically.

``$GLASSES_AGENT_CACHE``, else ``$XDG_CACHE_HOME/glasses-agent``, else
``~/.cache/glasses-agent``. ``glasses_agent`` uses this one definition too.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["default_cache_dir", "read_json", "write_json_atomic"]


def default_cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``$GLASSES_AGENT_CACHE``, else ``$XDG_CACHE_HOME/glasses-agent``, else ~/.cache/..."""
    env = os.environ if environ is None else environ
    if env.get("GLASSES_AGENT_CACHE"):
        return Path(env["GLASSES_AGENT_CACHE"]).expanduser()
    base = env.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "glasses-agent"


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when it is missing, unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_json_atomic(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename: readers never see
    half a file, and two writers leave one whole file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
