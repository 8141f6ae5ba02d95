"""The cloud gateway, its own deployable: the websocket server the glasses connect to,
device auth, answer stores, reasoning backends and contemplating mode.

It builds on the protocol core and the transport, never on edge code (a test checks).
The reasoning backends (models, HTTP clients) are imported lazily by ``make_backend``.
"""

from glasses_agent.gateway.auth import TokenTable, server_ssl_context
from glasses_agent.gateway.reasoning import (
    BackendError,
    DelayBackend,
    ReasoningBackend,
    ReasoningRequest,
    Usage,
    make_backend,
)
from glasses_agent.gateway.server import Gateway
from glasses_agent.gateway.stores import (
    AnswerStore,
    MemoryAnswerStore,
    SqliteAnswerStore,
    open_answer_store,
)

__all__ = [
    "AnswerStore",
    "BackendError",
    "DelayBackend",
    "Gateway",
    "MemoryAnswerStore",
    "ReasoningBackend",
    "ReasoningRequest",
    "SqliteAnswerStore",
    "TokenTable",
    "Usage",
    "make_backend",
    "open_answer_store",
    "server_ssl_context",
]
