"""Recognition: EfficientNet-Lite0 fp32 and int8 on real photos."""

from __future__ import annotations

import numpy as np
import pytest

from edge_models.photos import photo
from edge_models.recognition import Classifier, preprocess_imagenet
from edge_models.sessions import available_providers
from glasses_agent.errors import BadInputError

CAT_LABELS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module", params=["efficientnet_lite0_int8", "efficientnet_lite0_fp32"])
def classifier(request: pytest.FixtureRequest) -> Classifier:
    return Classifier(model=request.param)


def test_coffee_is_espresso_cup_or_mug(classifier: Classifier) -> None:
    top5 = classifier.classify(photo("coffee"))
    labels = [label for label, _ in top5]
    assert labels[0] == "espresso"
    assert top5[0][1] > 0.8
    assert {"espresso", "cup", "coffee mug"} <= set(labels)


def test_chelsea_is_a_cat(classifier: Classifier) -> None:
    top3 = classifier.classify(photo("chelsea"), top_k=3)
    assert top3[0][0] in CAT_LABELS
    assert sum(p for label, p in top3 if label in CAT_LABELS) > 0.7


def test_camera_and_motorcycle(classifier: Classifier) -> None:
    assert classifier.classify(photo("camera"), 1)[0][0] == "tripod"
    assert classifier.classify(photo("motorcycle_left"), 2)[0][0] in {"moped", "motor scooter"}


def test_output_is_a_probability_ranking(classifier: Classifier) -> None:
    probs = classifier.probabilities(photo("rocket"))
    assert probs.shape == (1000,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-4)
    ranked = classifier.classify(photo("rocket"), top_k=10)
    assert len(ranked) == 10
    assert [p for _, p in ranked] == sorted((p for _, p in ranked), reverse=True)
    assert classifier.provider in available_providers()
    assert len(classifier.labels) == 1000


def test_grey_and_rgba_inputs_are_accepted() -> None:
    classifier = Classifier()
    grey = photo("camera")[:, :, 0]
    assert classifier.classify(grey, 1)[0][0] == "tripod"
    rgba = np.dstack([photo("coffee"), np.full(photo("coffee").shape[:2], 255, np.uint8)])
    assert classifier.classify(rgba, 1)[0][0] == "espresso"


def test_preprocessing_is_the_trained_one() -> None:
    # (pixel - 127) / 128, RGB order, NCHW 224x224 from any shape.
    image = np.zeros((300, 500, 3), np.uint8)
    image[:, :, 2] = 255  # red in BGR
    image[:, :, 0] = 127
    x = preprocess_imagenet(image)
    assert x.shape == (1, 3, 224, 224) and x.dtype == np.float32
    assert np.allclose(x[0, 0], 1.0)  # R
    assert np.allclose(x[0, 1], -127 / 128)  # G
    assert np.allclose(x[0, 2], 0.0)  # B


@pytest.mark.parametrize("bad", [
    np.zeros((10, 10, 3), np.float32), np.zeros((1, 1, 3), np.uint8),
    np.zeros((10, 10, 2), np.uint8), [[1, 2], [3, 4]],
])
def test_bad_images_are_clear_errors(bad: object) -> None:
    with pytest.raises(BadInputError):
        Classifier().classify(bad)  # type: ignore[arg-type]


def test_top_k_must_be_positive() -> None:
    with pytest.raises(BadInputError, match="top_k"):
        Classifier().classify(photo("coffee"), top_k=0)
