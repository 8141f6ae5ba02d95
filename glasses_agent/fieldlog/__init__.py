"""Field logs: every session recorded to MCAP, viewed in Foxglove, replayed, reported on.

- ``Recorder`` (``recorder.py``): the edge's ``Tap``, written to an MCAP file and, with
  ``--live``, served to Foxglove as it runs (``writer.py``); channels and schemas in
  ``schemas.py``, records in ``records.py``;
- ``read_log`` (``reading.py``): a log back as typed records, with a clear error naming
  the byte offset of damage, and whatever a crash left readable;
- ``replay`` (``replay.py``): the recorded camera and audio through the current pipeline,
  compared with what was recorded;
- ``build_report`` (``report.py``, ``plots.py``): turns, latency by stage, link outages,
  plots, HTML and JSON, for one log or two side by side.

This package sits above the edge (it taps it; the edge never imports it) and below the
command line. Names load on first use, so reading a log does not load the recorder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from glasses_agent.fieldlog.reading import FieldLog, read_log
    from glasses_agent.fieldlog.recorder import Recorder
    from glasses_agent.fieldlog.replay import ReplayResult, replay
    from glasses_agent.fieldlog.report import Report, build_report

_HOMES = {
    "FieldLog": "reading",
    "Recorder": "recorder",
    "Report": "report",
    "ReplayResult": "replay",
    "build_report": "report",
    "read_log": "reading",
    "replay": "replay",
}

__all__ = ["FieldLog", "Recorder", "ReplayResult", "Report", "build_report", "read_log",
           "replay"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
