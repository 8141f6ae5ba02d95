"""Running async tests without a plugin, and an in-process gateway on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from glasses_agent.config import CloudConfig, Config
from glasses_agent.gateway import AnswerStore, Gateway, TokenTable
from glasses_agent.gateway.reasoning import DelayBackend, ReasoningBackend

__all__ = ["TOKENS", "cloud_config", "gateway_config", "run", "running_gateway"]

T = TypeVar("T")

# Devices glasses-1 .. glasses-200, each with its own token tok-1 .. tok-200.
TOKENS = TokenTable([f"glasses-{i} tok-{i}" for i in range(1, 201)])


def run(coro: Coroutine[Any, Any, T], timeout_s: float = 120.0) -> T:
    """Run ``coro`` on a fresh event loop, failing (not hanging) after ``timeout_s``."""
    return asyncio.run(asyncio.wait_for(coro, timeout_s))


def gateway_config(**gateway: Any) -> Config:
    config = Config()
    # The "delay" backend stands in for a model server that answers several at once.
    settings = {"host": "127.0.0.1", "port": 0, "backend": "delay", "backend_slots": 16,
                **gateway}
    return dataclasses.replace(config, gateway=dataclasses.replace(config.gateway, **settings))


def cloud_config(url: str, **cloud: Any) -> CloudConfig:
    """Generous timeouts (a loaded 2-core machine), quick reconnects."""
    settings: dict[str, Any] = {
        "url": url, "token": "tok-1", "answer_timeout_s": 30.0, "connect_timeout_s": 10.0,
        "reconnect_initial_s": 0.05, "reconnect_max_s": 0.5, "heartbeat_s": 5.0, **cloud,
    }
    return dataclasses.replace(CloudConfig(), **settings)


@contextlib.asynccontextmanager
async def running_gateway(
    backend: ReasoningBackend | None = None,
    *,
    store: AnswerStore | None = None,
    config: Config | None = None,
    **gateway: Any,
) -> AsyncIterator[Gateway]:
    """A gateway on 127.0.0.1 (a free port), shut down when the block ends."""
    gw = Gateway(config or gateway_config(**gateway),
                 backend=backend or DelayBackend(deltas=4, delay_per_delta_s=0.0),
                 tokens=TOKENS, store=store)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.shutdown(timeout_s=5.0)
