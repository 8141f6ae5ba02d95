"""A websocket client on a plain TCP socket, for tests of what a careless client does.

It is websockets' own sans-I/O client protocol over a blocking socket, so it writes
exactly what the test says (several messages in one TCP write, if asked) and reads
only when told: a client that stops reading is a client that does not call ``recv``.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import urlsplit

from websockets.client import ClientProtocol
from websockets.frames import Frame
from websockets.http11 import Response
from websockets.uri import parse_uri

from glasses_agent.protocol import Hello, Message, encode

__all__ = ["RawSocket"]


class RawSocket:
    """``send`` writes in one ``sendall``; ``recv_json`` reads (pings skipped)."""

    def __init__(self, url: str, *, rcvbuf: int | None = None, timeout_s: float = 20.0) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # a small window: the gateway's writes stall sooner
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout_s)
        self.sock.connect((parts.hostname or "127.0.0.1", parts.port or 80))
        self.protocol = ClientProtocol(parse_uri(url))
        self.seq = 0
        self._pending: list[Any] = []
        self.protocol.send_request(self.protocol.connect())
        self._flush()
        while not any(isinstance(e, Response) for e in self._pending):
            self._read(timeout_s)
        self._pending = [e for e in self._pending if not isinstance(e, Response)]

    def _flush(self) -> None:
        data = b"".join(self.protocol.data_to_send())
        if data:
            self.sock.sendall(data)

    def _read(self, timeout_s: float) -> bool:
        """Read once; False at end of stream."""
        self.sock.settimeout(timeout_s)
        data = self.sock.recv(65536)
        if not data:
            self.protocol.receive_eof()
            return False
        self.protocol.receive_data(data)
        self._pending.extend(self.protocol.events_received())
        self._flush()  # pongs and close replies the protocol queued
        return True

    def encode(self, message: Message) -> str | bytes:
        self.seq += 1
        return encode(message, self.seq)

    def send(self, *messages: Message | str | bytes) -> None:
        """Each message as a websocket frame, all of them in one TCP write."""
        for item in messages:
            data = self.encode(item) if not isinstance(item, str | bytes) else item
            if isinstance(data, str):
                self.protocol.send_text(data.encode("utf-8"))
            else:
                self.protocol.send_binary(data)
        self._flush()

    def hello(self, token: str) -> dict[str, Any]:
        self.send(Hello(token=token))
        return self.recv_json()

    def recv_json(self, timeout_s: float = 20.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            while self._pending:
                event = self._pending.pop(0)
                if isinstance(event, Frame) and event.opcode.name == "TEXT":
                    obj: dict[str, Any] = json.loads(event.data)
                    if obj["type"] != "ping":
                        return obj
            left_s = deadline - time.monotonic()
            if left_s <= 0:
                raise TimeoutError("no message in time")
            if not self._read(left_s):
                raise ConnectionError("the gateway closed the connection")

    def recv_until(self, kind: str, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        out = []
        while True:
            out.append(self.recv_json(timeout_s))
            if out[-1]["type"] == kind:
                return out

    def wait_closed(self, timeout_s: float = 20.0) -> str:
        """Read until the gateway ends the connection: "closed" (a close frame, then EOF),
        "eof" or "reset" (aborted); raises ``TimeoutError`` if it stays open."""
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                if not self._read(max(0.01, deadline - time.monotonic())):
                    closes = [e for e in self._pending
                              if isinstance(e, Frame) and e.opcode.name == "CLOSE"]
                    return "closed" if closes else "eof"
        except ConnectionResetError:
            return "reset"
        except TimeoutError:
            pass
        raise TimeoutError(f"the connection is still open after {timeout_s:g} s")

    def close(self) -> None:
        self.sock.close()
