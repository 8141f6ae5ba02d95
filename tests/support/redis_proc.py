"""A real ``redis-server`` for tests: on a free port of 127.0.0.1, in a temporary folder,
with the project's own ``deploy/redis.conf`` (append-only file on)."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

from support.daemon import Daemon
from support.net import free_port

__all__ = ["REDIS_CONF", "RedisServer", "redis_available"]

REDIS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "redis.conf"


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer(Daemon):
    """``start()`` waits until it answers PING; ``kill()`` is SIGKILL, ``stop()`` SIGTERM
    (Redis then writes its append-only file out). A restart keeps the port and the folder,
    so what the append-only file holds comes back."""

    def __init__(self, folder: Path, *, port: int = 0) -> None:
        super().__init__(folder, "redis")
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        if not redis_available():
            raise RuntimeError("redis-server is not installed (bash scripts/setup.sh installs it)")
        self.spawn(["redis-server", str(REDIS_CONF), "--port", str(self.port),
                    "--bind", "127.0.0.1", "--dir", str(self.folder), "--daemonize", "no"],
                   lambda: self.command("PING") == "+PONG", timeout_s=timeout_s)

    def command(self, *words: str) -> str | None:
        """One command over a plain socket (inline protocol); the first reply line."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
                sock.sendall((" ".join(words) + "\r\n").encode())
                return sock.recv(65536).decode(errors="replace").split("\r\n", 1)[0]
        except OSError:
            return None

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as a dict (a bulk reply: ``$<length>``, then the text)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=2.0) as sock:
            sock.sendall(f"INFO {section}\r\n".encode())
            data = b""
            while b"\r\n" not in data or len(data.partition(b"\r\n")[2]) < int(
                    data.partition(b"\r\n")[0][1:]):
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        text = data.partition(b"\r\n")[2].decode(errors="replace")
        pairs = (line.split(":", 1) for line in text.splitlines() if ":" in line)
        return {k: v for k, v in pairs}
