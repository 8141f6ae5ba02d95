"""A real ``redis-server`` for tests: on a free port of 127.0.0.1, in a temporary folder,
with the project's own ``deploy/redis.conf`` (append-only file on)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

from support.net import free_port

__all__ = ["REDIS_CONF", "RedisServer", "redis_available"]

REDIS_CONF = Path(__file__).resolve().parents[2] / "deploy" / "redis.conf"


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


class RedisServer:
    """``start()`` waits until it answers PING; ``kill()`` is SIGKILL, ``stop()`` SIGTERM
    (Redis then writes its append-only file out). A restart keeps the port and the folder,
    so what the append-only file holds comes back."""

    def __init__(self, folder: Path, *, port: int = 0) -> None:
        self.folder = folder
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 20.0) -> None:
        if shutil.which("redis-server") is None:
            raise RuntimeError("redis-server is not installed (bash scripts/setup.sh installs it)")
        log = (self.folder / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", str(REDIS_CONF), "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", str(self.folder), "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.command("PING") == "+PONG":
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError("redis-server did not start:\n" + self.log())

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

    def log(self) -> str:
        path = self.folder / "redis.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
