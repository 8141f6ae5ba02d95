"""Fixtures shared across the test modules; plain helpers live in the ``support`` package.

``tests/`` is on ``sys.path`` (pytest's rootdir-relative import), so a test imports
helpers as ``from support.speech import speak``; no test module imports another.
"""

from __future__ import annotations

import pytest

from glasses_agent.edge.speech.asr import WhisperAsr


@pytest.fixture(scope="session")
def asr() -> WhisperAsr:
    """The default speech recogniser, loaded once for the whole run (it is read-only)."""
    return WhisperAsr()
