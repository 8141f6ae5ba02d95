"""Errors a user can act on. The CLI prints their message on one line and exits 2."""

from __future__ import annotations

__all__ = ["BadInputError", "DeviceUnavailableError", "GlassesError"]


class GlassesError(Exception):
    """Base class: the message says what is wrong and what to do."""

    exit_code = 1


class BadInputError(GlassesError):
    """A file or argument that cannot be used (missing, empty, truncated, wrong kind)."""

    exit_code = 2


class DeviceUnavailableError(GlassesError):
    """A microphone, speaker or camera that is not there."""

    exit_code = 2
