"""Errors a user can act on. A command line prints their message on one line.

They live here, in the lowest layer, so that ``edge_models`` stands alone;
``glasses_agent.errors`` builds on them (the same classes).
"""

from __future__ import annotations

__all__ = ["BadInputError", "DeviceUnavailableError", "GlassesError", "ModelFileError"]


class GlassesError(Exception):
    """Base class: the message says what is wrong and what to do."""

    exit_code = 1


class BadInputError(GlassesError):
    """A file or argument that cannot be used (missing, empty, truncated, wrong kind)."""

    exit_code = 2


class DeviceUnavailableError(GlassesError):
    """A microphone, speaker or camera that is not there."""

    exit_code = 2


class ModelFileError(GlassesError):
    """A model file that is missing, unreadable or not the one the registry names."""

    exit_code = 2
