"""Seeing: what the camera shows, on demand and at a steady rate.

Recognition (whole frame and centre), OCR, faces, barcodes, keyframe choice,
and the outgoing-JPEG path that blurs faces. Models come from ``edge_models``
and are loaded only when asked for (``Perceiver.from_config``); OpenCV is
imported on first use.
"""

from glasses_agent.edge.perception.barcodes import BarcodeScanner
from glasses_agent.edge.perception.keyframe import choose_keyframe, sharpness
from glasses_agent.edge.perception.loop import LoopStats, Perceiver, PerceptionLoop
from glasses_agent.edge.perception.privacy import (
    FaceRedactor,
    OutgoingImage,
    PrivacyOnError,
    blur_regions,
)
from glasses_agent.edge.perception.recognition import (
    NOT_SURE,
    SceneRecognizer,
    center_crop,
    describe_view,
    in_view,
)
from glasses_agent.edge.perception.text import find_prices, find_times, read_text, reading_order

__all__ = [
    "NOT_SURE",
    "BarcodeScanner",
    "FaceRedactor",
    "LoopStats",
    "OutgoingImage",
    "PerceptionLoop",
    "Perceiver",
    "PrivacyOnError",
    "SceneRecognizer",
    "blur_regions",
    "center_crop",
    "choose_keyframe",
    "describe_view",
    "find_prices",
    "find_times",
    "in_view",
    "read_text",
    "reading_order",
    "sharpness",
]
