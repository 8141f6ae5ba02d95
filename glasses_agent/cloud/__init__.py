"""The cloud side: the reasoning contract, the gateway, and the edge's client of it.

The reasoning backends (models, HTTP clients) are imported lazily by ``make_backend``.
"""

from glasses_agent.cloud.client import (
    CloudAnswer,
    CloudError,
    CloudRefusedError,
    CloudTimeoutError,
    EdgeClient,
    LinkState,
    Reply,
)
from glasses_agent.cloud.gateway import (
    AnswerStore,
    Gateway,
    MemoryAnswerStore,
    SqliteAnswerStore,
    TokenTable,
)
from glasses_agent.cloud.reasoning import (
    BackendError,
    DelayBackend,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    make_backend,
)

__all__ = [
    "AnswerStore",
    "BackendError",
    "CloudAnswer",
    "CloudError",
    "CloudRefusedError",
    "CloudTimeoutError",
    "DelayBackend",
    "EdgeClient",
    "Gateway",
    "LinkState",
    "MemoryAnswerStore",
    "ReasoningBackend",
    "ReasoningRequest",
    "Reply",
    "SqliteAnswerStore",
    "TokenTable",
    "Usage",
    "make_backend",
]
