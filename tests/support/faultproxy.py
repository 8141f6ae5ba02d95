"""A TCP proxy on 127.0.0.1 that injects faults between the edge and the gateway.

The simulator's ``NetLink`` (a relay that can be cut) with more faults:

- ``delay_s``: every chunk waits this long before it is forwarded (both ways);
- ``stall()`` / ``resume()``: hold all data (connections stay open, nothing moves);
- ``cut()``: abort every connection at once (an RST, as when the network drops);
- ``refusing``: new connections are closed as soon as they are accepted.
"""

from __future__ import annotations

import asyncio

from simulator.netlink import NetLink

__all__ = ["FaultProxy"]


class FaultProxy(NetLink):
    def __init__(self, target_port: int, *, target_host: str = "127.0.0.1") -> None:
        super().__init__(target_host, target_port)
        self.delay_s = 0.0
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def refusing(self) -> bool:
        return not self.up

    @refusing.setter
    def refusing(self, value: bool) -> None:
        self.up = not value

    @property
    def accepted(self) -> int:
        return self.connections

    def stall(self) -> None:
        self._flowing.clear()

    def resume(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        """Abort every live connection (both sides see a reset); new ones still come in
        unless ``refusing``."""
        self.drop_connections()

    async def aclose(self) -> None:
        self.resume()
        await super().aclose()

    async def _before_forwarding(self) -> None:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        await self._flowing.wait()
