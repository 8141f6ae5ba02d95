"""Who may connect: device tokens, and the TLS context of the listening socket.

A token never appears in a message or a log line: a malformed tokens-file line is
named by its line number, never by its content.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Iterable
from pathlib import Path

from glasses_agent.config import GatewayConfig
from glasses_agent.errors import BadInputError

__all__ = ["TokenTable", "server_ssl_context"]


class TokenTable:
    """Device tokens -> device ids. An entry is ``"device-id token"`` or a bare
    ``"token"`` (its device id is then ``device-`` and 8 hex digits of its hash).
    Blank lines and lines starting with ``#`` are skipped."""

    def __init__(self, entries: Iterable[str], *, source: str = "tokens") -> None:
        self._devices: dict[bytes, str] = {}
        for number, entry in enumerate(entries, start=1):
            parts = entry.split()
            if not parts or parts[0].startswith("#"):
                continue
            if len(parts) > 2:
                raise BadInputError(
                    f"{source}, entry {number}: {len(parts)} fields; expected 'token' or "
                    "'device-id token' (the entry is not shown: it may hold a token)"
                )
            token = parts[-1]
            digest = hashlib.sha256(token.encode()).digest()
            self._devices[digest] = parts[0] if len(parts) == 2 else f"device-{digest.hex()[:8]}"

    def __len__(self) -> int:
        return len(self._devices)

    def device_for(self, token: str) -> str | None:
        """The device id of ``token``, or None. (A hash lookup: no early-exit compare.)"""
        if not token:
            return None
        return self._devices.get(hashlib.sha256(token.encode()).digest())

    @classmethod
    def from_config(cls, config: GatewayConfig) -> TokenTable:
        entries: list[str] = [e for e in config.tokens.split(",") if e.strip()]
        table = cls(entries, source="gateway.tokens")
        if config.tokens_file:
            path = Path(config.tokens_file).expanduser()
            try:
                lines = path.read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise BadInputError(f"cannot read the tokens file {path}: {exc}") from exc
            from_file = cls(lines, source=f"tokens file {path}")
            table._devices.update(from_file._devices)
        if not len(table):
            raise BadInputError(
                "no device tokens: give --tokens-file PATH (one 'device-id token' per line) "
                "or set GLASSES_AGENT_GATEWAY__TOKENS"
            )
        return table


def server_ssl_context(config: GatewayConfig) -> ssl.SSLContext | None:
    """A TLS context from ``tls_cert`` and ``tls_key`` (PEM), or None for plain ws://."""
    if not config.tls_cert and not config.tls_key:
        return None
    if not (config.tls_cert and config.tls_key):
        raise BadInputError("TLS needs both gateway.tls_cert and gateway.tls_key")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(Path(config.tls_cert).expanduser(),
                                Path(config.tls_key).expanduser())
    except (OSError, ssl.SSLError) as exc:
        raise BadInputError(f"cannot load the TLS certificate or key: {exc}") from exc
    return context
