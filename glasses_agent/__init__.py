"""glasses-agent: an open runtime for AI smart glasses.

The names below load on first use (PEP 562), so that importing one layer, say
``glasses_agent.protocol``, loads only what that layer needs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from glasses_agent.clock import Clock, ManualClock, MonotonicClock
    from glasses_agent.config import Config, load_config
    from glasses_agent.errors import BadInputError, DeviceUnavailableError, GlassesError
    from glasses_agent.stages import Pipeline, Stage

__version__ = "0.1.0"

_HOMES = {
    "BadInputError": "errors",
    "Clock": "clock",
    "Config": "config",
    "DeviceUnavailableError": "errors",
    "GlassesError": "errors",
    "ManualClock": "clock",
    "MonotonicClock": "clock",
    "Pipeline": "stages",
    "Stage": "stages",
    "load_config": "config",
}

__all__ = [
    "BadInputError",
    "Clock",
    "Config",
    "DeviceUnavailableError",
    "GlassesError",
    "ManualClock",
    "MonotonicClock",
    "Pipeline",
    "Stage",
    "__version__",
    "load_config",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'glasses_agent' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"glasses_agent.{home}"), name)
    globals()[name] = value
    return value
