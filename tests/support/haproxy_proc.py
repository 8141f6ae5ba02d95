"""A real HAProxy for tests, running the project's own ``deploy/haproxy.cfg`` (its
addresses come from the environment) in front of gateway replicas on 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

from support.daemon import Daemon
from support.net import free_port

__all__ = ["HAPROXY_CFG", "HAProxy", "haproxy_available"]

HAPROXY_CFG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy.cfg"


def haproxy_available() -> bool:
    return shutil.which("haproxy") is not None


class HAProxy(Daemon):
    """``start()`` checks the config, then waits until the frontend accepts connections."""

    def __init__(self, folder: Path, replica_ports: tuple[int, int]) -> None:
        super().__init__(folder, "haproxy")
        self.port = free_port()
        self.env = {**os.environ, "GA_LISTEN": f"127.0.0.1:{self.port}",
                    "GA_REPLICA_1": f"127.0.0.1:{replica_ports[0]}",
                    "GA_REPLICA_2": f"127.0.0.1:{replica_ports[1]}"}

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 20.0) -> None:
        check = subprocess.run(["haproxy", "-c", "-q", "-f", str(HAPROXY_CFG)], env=self.env,
                               capture_output=True, text=True, check=False)
        if check.returncode != 0:
            raise RuntimeError(f"deploy/haproxy.cfg is not valid:\n{check.stderr}")
        self.spawn(["haproxy", "-db", "-f", str(HAPROXY_CFG)], self._accepts,
                   timeout_s=timeout_s, env=self.env)

    def _accepts(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1.0).close()
        except OSError:
            return False
        return True
