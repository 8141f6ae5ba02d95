"""glasses-agent: an open runtime for AI smart glasses."""

from glasses_agent.clock import Clock, ManualClock, MonotonicClock
from glasses_agent.config import Config, load_config
from glasses_agent.errors import BadInputError, DeviceUnavailableError, GlassesError
from glasses_agent.stages import Pipeline, Stage

__version__ = "0.1.0"

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
