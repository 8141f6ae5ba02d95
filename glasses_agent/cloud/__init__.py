"""The cloud side: the reasoning contract, the gateway, and the edge's client of it.

Heavy parts (backends, the websockets server) are imported where they are used.
"""

from glasses_agent.cloud.reasoning import (
    BackendError,
    DelayBackend,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    make_backend,
)

__all__ = [
    "BackendError",
    "DelayBackend",
    "ReasoningBackend",
    "ReasoningRequest",
    "Usage",
    "make_backend",
]
