"""The protocol's vocabulary of refusals: error codes and websocket close codes.

``ErrorCode`` values travel in ``error`` messages (``code``); ``CloseCode`` values
close the websocket. Both are documented in docs/protocol.md. Codes received from
a peer stay plain strings (a newer peer may send a code this version does not
know); compare them with the members, which are strings too.
"""

from __future__ import annotations

import enum

from glasses_agent.errors import GlassesError

__all__ = ["NO_RETRY", "CloseCode", "ErrorCode", "ProtocolError"]


class ErrorCode(enum.StrEnum):
    # The message itself.
    BAD_MESSAGE = "bad_message"  # not JSON, a missing or mistyped field
    UNKNOWN_TYPE = "unknown_type"
    MESSAGE_TOO_BIG = "message_too_big"  # never sent: the websocket library closes with 1009
    BAD_SEQUENCE = "bad_sequence"  # a numbering slip; the message is handled all the same
    UNEXPECTED_MESSAGE = "unexpected_message"
    # The handshake.
    BAD_HANDSHAKE = "bad_handshake"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    HANDSHAKE_PENDING = "handshake_pending"
    UNAUTHORIZED = "unauthorized"
    UNSUPPORTED_VERSION = "unsupported_version"
    # A query.
    BUSY = "busy"  # too many queries in flight (per session or per device)
    RATE_LIMITED = "rate_limited"  # the device asks faster than its rate limit
    DUPLICATE_QUERY = "duplicate_query"
    TOO_MANY_IMAGES = "too_many_images"
    BAD_IMAGE = "bad_image"
    UNEXPECTED_IMAGE = "unexpected_image"
    BAD_OFFSET = "bad_offset"  # edge -> gateway: a delta beyond the text received
    # The connection.
    HEARTBEAT_TIMEOUT = "heartbeat_timeout"
    TOO_MANY_ERRORS = "too_many_errors"
    TOO_SLOW = "too_slow"  # the peer does not read what is sent to it
    SESSION_REPLACED = "session_replaced"
    GOING_AWAY = "going_away"
    INTERNAL_ERROR = "internal_error"
    # The reasoning backend (query errors).
    BACKEND_UNAVAILABLE = "backend_unavailable"
    BACKEND_TIMEOUT = "backend_timeout"
    BACKEND_FAILED = "backend_failed"


class CloseCode(enum.IntEnum):
    """Websocket close codes: RFC 6455's, then ours in the private range 4000-4999."""

    NORMAL = 1000
    GOING_AWAY = 1001  # the gateway is shutting down: reconnect (elsewhere)
    PROTOCOL_ERROR = 1002  # sent by the websocket library: a framing violation
    INVALID_DATA = 1007  # sent by the websocket library: a text message not valid UTF-8
    MESSAGE_TOO_BIG = 1009  # sent by the websocket library: over max_message_bytes
    INTERNAL_ERROR = 1011
    BAD_HANDSHAKE = 4000  # first message not a valid hello, or no hello in time
    UNAUTHORIZED = 4001  # missing or wrong device token (do not retry)
    UNSUPPORTED_VERSION = 4002  # protocol version not spoken by the gateway (do not retry)
    HEARTBEAT_TIMEOUT = 4003  # nothing heard from the peer for too long
    TOO_MANY_ERRORS = 4004  # too many malformed messages on one connection
    SESSION_REPLACED = 4005  # a newer connection resumed this session
    TOO_SLOW = 4006  # the peer did not read what was sent to it


NO_RETRY: frozenset[int] = frozenset({CloseCode.UNAUTHORIZED, CloseCode.UNSUPPORTED_VERSION})


class ProtocolError(GlassesError):
    """A message that cannot be accepted. ``code`` is sent to the peer in an ``error``;
    ``query_id``, when known, says which query it ends."""

    exit_code = 2

    def __init__(self, code: str, message: str, *, query_id: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.query_id = query_id
