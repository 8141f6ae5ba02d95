"""The one lazy import of OpenCV (``opencv-python-headless`` 4.x, a core dependency).

OpenCV is imported on first use so that commands that never touch images start
fast. Its own warnings (e.g. "can't open camera by index") would add lines to our
one-line errors: only its errors are kept unless the user set OPENCV_LOG_LEVEL.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["cv2"]


def cv2() -> Any:
    """The ``cv2`` module."""
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    import cv2 as module

    return module
