"""The cloud the edge commands talk to: a given gateway, none (offline), or one started
here, in this process, with the embedded model (so ``run`` and ``ask`` work offline on a
fresh machine). This module is part of the command line, the one layer that may join the
edge and the gateway; the edge itself never imports the gateway."""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator

from glasses_agent.config import Config
from glasses_agent.edge.build import CloudTarget
from glasses_agent.edge.client import read_token

__all__ = ["cloud_for"]


@contextlib.asynccontextmanager
async def cloud_for(config: Config, *, url: str | None, offline: bool
                    ) -> AsyncIterator[CloudTarget | None]:
    """``--offline``: None. ``--cloud URL``: that gateway, with the device token from
    ``[cloud]``. Neither: a gateway on 127.0.0.1 in this process, with the embedded model
    and a token made up for this run."""
    if offline:
        yield None
        return
    if url:
        yield CloudTarget(url=url, token=read_token(config.cloud))
        return
    from glasses_agent.gateway import Gateway, TokenTable

    token = secrets.token_urlsafe(18)
    gateway_config = dataclasses.replace(
        config, gateway=dataclasses.replace(config.gateway, host="127.0.0.1", port=0,
                                            backend="local"))
    gateway = Gateway(gateway_config, tokens=TokenTable([f"these-glasses {token}"]))
    await gateway.start()
    try:
        yield CloudTarget(url=gateway.url, token=token)
    finally:
        await gateway.shutdown(timeout_s=5.0)
