"""Raw websocket access to a gateway, for tests that send what a good client would not."""

from __future__ import annotations

import json
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from glasses_agent.protocol import PROTOCOL_VERSION, Hello, Message, encode

__all__ = ["RawClient", "raw_connect"]


class RawClient:
    """A websocket with its own send sequence; ``recv_json`` returns decoded dicts."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.seq = 0

    async def send(self, message: Message) -> None:
        self.seq += 1
        await self.ws.send(encode(message, self.seq))

    async def send_raw(self, data: str | bytes) -> None:
        await self.ws.send(data)

    async def hello(self, token: str, *, protocol: int = PROTOCOL_VERSION,
                    resume: str = "") -> dict[str, Any]:
        await self.send(Hello(token=token, protocol=protocol, resume=resume))
        return await self.recv_json()

    async def recv_json(self, timeout_s: float = 20.0) -> dict[str, Any]:
        import asyncio

        while True:
            data = await asyncio.wait_for(self.ws.recv(), timeout_s)
            assert isinstance(data, str)
            obj: dict[str, Any] = json.loads(data)
            if obj["type"] == "ping":
                continue
            return obj

    async def recv_until(self, kind: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """Messages up to and including the first of type ``kind``."""
        out = []
        while True:
            obj = await self.recv_json(timeout_s)
            out.append(obj)
            if obj["type"] == kind:
                return out

    async def closed(self, timeout_s: float = 20.0) -> tuple[int | None, str]:
        """Wait for the close; (code, reason) as received."""
        import asyncio

        try:
            while True:
                await asyncio.wait_for(self.ws.recv(), timeout_s)
        except ConnectionClosed:
            pass
        return self.ws.close_code, self.ws.close_reason or ""


async def raw_connect(url: str, **kwargs: Any) -> RawClient:
    ws = await connect(url, proxy=None, compression=None, ping_interval=None,
                       open_timeout=20, close_timeout=2, max_size=None, **kwargs)
    return RawClient(ws)
