"""The reasoning contract between the gateway and its backends.

The gateway turns each escalated query into a ``ReasoningRequest`` and streams
the backend's text deltas back to the edge. A backend is anything with a
``name``, ``stream(request)`` (an async iterator of text deltas) and
``aclose()``; cancellation is task cancellation (the gateway cancels the task
iterating ``stream`` on barge-in or disconnect, so a backend must let
``CancelledError`` through and release what it holds in ``finally``).

Usage (for the backends engineer): after a stream ends, the caller takes its
token counts with ``pop_usage(backend, query_id)``, which calls
``backend.pop_usage(query_id)`` *if the backend has it*; the gateway puts them
in the done message. A backend that does not count tokens omits the method;
the gateway then reports an estimate (whitespace-separated words) and marks it
as such. Keyed by ``query_id`` so concurrent streams on one backend cannot mix
their counts; every stream's counts must be popped (contemplating mode pops
its sub-agents' and adds them up), or the backend's table grows.

``make_backend(config)`` picks ``config.gateway.backend``:
- ``delay``: ``DelayBackend`` (deterministic, no model: tests and benchmarks);
- any other name ``N``: ``glasses_agent.gateway.backends.N`` is imported lazily
  and its ``create(config: Config) -> ReasoningBackend`` is called. A missing
  module or dependency is a ``BackendError`` that says what to install.

Contemplating mode: when a query's ``contemplate`` flag is set, the gateway
calls ``glasses_agent.gateway.contemplate.contemplate(backend, request,
config.contemplate)`` (an async iterator of merged text deltas) instead of
``backend.stream(request)``.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from glasses_agent.config import Config
from glasses_agent.errors import GlassesError
from glasses_agent.protocol import ErrorCode, Facts

__all__ = [
    "BackendError",
    "DelayBackend",
    "ReasoningBackend",
    "ReasoningRequest",
    "Usage",
    "estimate_usage",
    "make_backend",
    "pop_usage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasoningRequest:
    """One escalated query, as the gateway hands it to a backend.

    ``facts``: what the edge perceived (``glasses_agent.protocol.Facts``: labels,
    text read, barcodes, people in view, location when the wearer allows it, the
    local time, the router's intent). ``images_jpeg``: at most two keyframes,
    bystander faces already blurred by the edge.
    """

    query_id: str
    text: str
    facts: Facts = field(default_factory=Facts)
    images_jpeg: tuple[bytes, ...] = ()
    max_tokens: int = 128
    contemplate: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@runtime_checkable
class ReasoningBackend(Protocol):
    name: str

    def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        """Text deltas of the answer; stops when the answer is complete."""
        ...

    async def aclose(self) -> None:
        """Release models, HTTP clients, ... (idempotent)."""
        ...


class BackendError(GlassesError):
    """A backend cannot answer. ``code`` travels to the edge in the error message.

    Codes: ``backend_unavailable`` (not installed, server down), ``rate_limited``,
    ``backend_timeout``, ``backend_failed`` (anything else).
    """

    exit_code = 2

    def __init__(self, message: str, *, code: str = ErrorCode.BACKEND_FAILED) -> None:
        super().__init__(message)
        self.code = code


def pop_usage(backend: ReasoningBackend, query_id: str) -> Usage | None:
    """The token counts ``backend`` reported for the stream of ``query_id`` (once), or None."""
    pop = getattr(backend, "pop_usage", None)
    usage = pop(query_id) if callable(pop) else None
    return usage if isinstance(usage, Usage) else None


def estimate_usage(request: ReasoningRequest, answer: str) -> Usage:
    """A rough count (words) for backends that do not report tokens."""
    facts = request.facts.to_wire()
    prompt = len(request.text.split()) + sum(len(str(v).split()) for k, v in facts.items()
                                             if k != "v")
    return Usage(prompt_tokens=prompt, completion_tokens=len(answer.split()))


class DelayBackend:
    """A deterministic backend: ``text`` (or an echo of the query) in ``deltas``
    pieces, waiting ``delay_per_delta_s`` before each one.

    The stand-in for "a backend with a fixed delay" in the benchmarks and the
    transport reliability tests; it needs no model and no network.
    """

    name = "delay"

    def __init__(
        self, *, text: str = "", deltas: int = 4, delay_per_delta_s: float = 0.0
    ) -> None:
        if deltas < 1:
            raise ValueError(f"deltas must be at least 1, got {deltas}")
        if delay_per_delta_s < 0:
            raise ValueError(f"delay_per_delta_s must be >= 0, got {delay_per_delta_s}")
        self.text = text
        self.deltas = deltas
        self.delay_per_delta_s = delay_per_delta_s
        self._usage: dict[str, Usage] = {}

    def answer_for(self, request: ReasoningRequest) -> str:
        """The whole answer this backend streams for ``request``."""
        return self.text or f"You asked: {request.text}"

    async def stream(self, request: ReasoningRequest) -> AsyncIterator[str]:
        answer = self.answer_for(request)
        pieces = _split(answer, self.deltas)
        for piece in pieces:
            # sleep(0) still yields to the loop, so a zero delay stays cancellable.
            await asyncio.sleep(self.delay_per_delta_s)
            yield piece
        self._usage[request.query_id] = estimate_usage(request, answer)

    def pop_usage(self, query_id: str) -> Usage | None:
        return self._usage.pop(query_id, None)

    async def aclose(self) -> None:
        self._usage.clear()


def _split(text: str, parts: int) -> list[str]:
    """``text`` cut into ``parts`` non-empty pieces of near-equal length (fewer if short)."""
    parts = max(1, min(parts, len(text)))
    size, extra = divmod(len(text), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(text[start:end])
        start = end
    return [p for p in out if p] or [""]


def known_backends() -> list[str]:
    """``delay`` and every module in ``glasses_agent.gateway.backends``: backends are found
    by name, as ``make_backend`` loads them (none is imported here)."""
    import importlib.util
    import pkgutil

    spec = importlib.util.find_spec("glasses_agent.gateway.backends")
    folders = list(spec.submodule_search_locations or []) if spec else []
    found = [m.name for m in pkgutil.iter_modules(folders) if not m.name.startswith("_")]
    return sorted({"delay", *found})


def make_backend(config: Config) -> ReasoningBackend:
    """The backend named by ``config.gateway.backend``, built from ``config``."""
    name = config.gateway.backend
    if name == "delay":
        gw = config.gateway
        return DelayBackend(
            text=gw.delay_text, deltas=gw.delay_deltas, delay_per_delta_s=gw.delay_per_delta_s
        )
    if not name.isidentifier():
        raise BackendError(f"unknown reasoning backend {name!r}",
                           code=ErrorCode.BACKEND_UNAVAILABLE)
    module_name = f"glasses_agent.gateway.backends.{name}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name or (exc.name and module_name.startswith(exc.name + ".")):
            raise BackendError(
                f"unknown reasoning backend {name!r} (known: {', '.join(known_backends())})",
                code=ErrorCode.BACKEND_UNAVAILABLE,
            ) from exc
        raise BackendError(
            f"backend {name!r} needs the package {exc.name!r}: "
            f"pip install 'glasses-agent[llm]' (local) or see README",
            code=ErrorCode.BACKEND_UNAVAILABLE,
        ) from exc
    create = getattr(module, "create", None)
    if create is None:
        raise BackendError(f"{module_name} has no create(config)",
                           code=ErrorCode.BACKEND_UNAVAILABLE)
    backend: ReasoningBackend = create(config)
    return backend
