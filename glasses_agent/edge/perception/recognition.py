"""What is in view: recognition on the centre crop (where the wearer looks) and the whole frame.

The classifier (``edge_models.recognition.Classifier``, ImageNet labels) runs
twice: on a centred square of ``center_crop_fraction`` of the frame's shorter
side, which is what the wearer is looking at, and on the whole frame. The
answer prefers the centre; below ``min_label_score`` it is "not sure", never a
guess. The classifier itself centre-crops its input to a square, so for a 4:3
frame "the whole frame" is its central 75 % in width.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from glasses_agent.edge.perception.steps import PerceptionPart
from glasses_agent.errors import BadInputError
from glasses_agent.frames import Label, Perception

if TYPE_CHECKING:
    from glasses_agent.config import Config

__all__ = [
    "NOT_SURE",
    "ClassifierLike",
    "RecognitionStep",
    "SceneRecognizer",
    "center_crop",
    "create_step",
    "describe_view",
    "in_view",
]

UInt8Array = npt.NDArray[np.uint8]
NOT_SURE = "not sure"


class ClassifierLike(Protocol):
    """``edge_models.recognition.Classifier``'s shape."""

    def classify(self, image_bgr: UInt8Array, top_k: int = 5) -> list[tuple[str, float]]: ...


def center_crop(image_bgr: UInt8Array, fraction: float) -> UInt8Array:
    """The centred square whose side is ``fraction`` of the image's shorter side."""
    if not 0.0 < fraction <= 1.0:
        raise BadInputError(f"center_crop_fraction must be in (0, 1], not {fraction}")
    h, w = image_bgr.shape[:2]
    side = max(2, round(min(h, w) * fraction))
    y0, x0 = (h - side) // 2, (w - side) // 2
    return image_bgr[y0:y0 + side, x0:x0 + side]


class SceneRecognizer:
    """Labels for the whole frame and for its centre, with softmax scores, best first."""

    def __init__(self, classifier: ClassifierLike, *, center_crop_fraction: float = 0.5,
                 top_k: int = 5) -> None:
        if not 0.0 < center_crop_fraction <= 1.0:
            raise BadInputError("center_crop_fraction must be in (0, 1], "
                                f"not {center_crop_fraction}")
        self.classifier = classifier
        self.center_crop_fraction = center_crop_fraction
        self.top_k = top_k

    def recognize(self, image_bgr: UInt8Array) -> tuple[tuple[Label, ...], tuple[Label, ...]]:
        """(whole-frame labels, centre labels)."""
        whole = self.classifier.classify(image_bgr, top_k=self.top_k)
        centre = self.classifier.classify(center_crop(image_bgr, self.center_crop_fraction),
                                          top_k=self.top_k)
        return (tuple(Label(name=n, score=round(s, 4)) for n, s in whole),
                tuple(Label(name=n, score=round(s, 4)) for n, s in centre))


class RecognitionStep:
    """The perception step: labels for the whole frame and for its centre."""

    name = "recognition"

    def __init__(self, recognizer: SceneRecognizer, *, model: str = "") -> None:
        self.recognizer = recognizer
        self.models = (model,) if model else ()

    def run(self, image_bgr: UInt8Array) -> PerceptionPart:
        labels, center_labels = self.recognizer.recognize(image_bgr)
        return PerceptionPart(labels=labels, center_labels=center_labels)


def create_step(config: Config) -> RecognitionStep:
    """EfficientNet-Lite0 (the variant the int8 self-check picks for this CPU)."""
    from edge_models.recognition import Classifier

    p, m = config.perception, config.models
    classifier = Classifier(model=p.recognition_model, providers=m.providers,
                            intra_op_threads=m.intra_op_threads, int8=m.int8)
    recognizer = SceneRecognizer(classifier, center_crop_fraction=p.center_crop_fraction)
    return RecognitionStep(recognizer, model=classifier.choice.name)


def in_view(labels: Sequence[Label], center_labels: Sequence[Label], *,
            min_label_score: float) -> Label | None:
    """The label to answer "what is this?" with: the centre's best if it is sure enough,
    else the whole frame's; None ("not sure") when neither reaches ``min_label_score``."""
    for candidates in (center_labels, labels):
        if candidates:
            best = max(candidates, key=lambda label: label.score)
            if best.score >= min_label_score:
                return best
    return None


def describe_view(perception: Perception, *, min_label_score: float) -> str:
    """A short answer: the label's name, or "not sure"."""
    label = in_view(perception.labels, perception.center_labels,
                    min_label_score=min_label_score)
    return NOT_SURE if label is None else label.name
