"""Errors a user can act on. The CLI prints their message on one line and exits 2.

The classes are defined in ``edge_models.errors`` (the lowest layer, which imports
nothing of ``glasses_agent``) and are the same objects here.
"""

from __future__ import annotations

from edge_models.errors import BadInputError, DeviceUnavailableError, GlassesError, ModelFileError

__all__ = ["BadInputError", "DeviceUnavailableError", "GlassesError", "ModelFileError"]
