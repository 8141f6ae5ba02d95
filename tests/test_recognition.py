"""Recognition: EfficientNet-Lite0 on real photos.

fp32 is asserted exactly (its labels do not depend on the CPU); int8 only through its
agreement with fp32, since int8 kernels differ by CPU (edge_models.cpu).
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_models.photos import photo
from edge_models.recognition import Classifier, preprocess_imagenet
from edge_models.sessions import available_providers
from glasses_agent.errors import BadInputError

CAT_LABELS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(model="efficientnet_lite0_fp32")


@pytest.fixture(scope="module")
def int8() -> Classifier:
    return Classifier(model="efficientnet_lite0_int8")


def test_int8_agrees_with_fp32(classifier: Classifier, int8: Classifier) -> None:
    # The photos fp32 is sure about: int8's top class is fp32's on at least 4 of 5, and
    # always among fp32's top 5 (the bench set's figure: BENCHMARKS.md).
    same = 0
    for name in ("coffee", "chelsea", "camera", "motorcycle_left", "rocket"):
        ref = [label for label, _ in classifier.classify(photo(name))]
        got = int8.classify(photo(name), 1)[0][0]
        assert got in ref, name
        same += got == ref[0]
    assert same >= 4
    assert int8.choice.variant == "int8" and "named explicitly" in int8.choice.reason
    probs = int8.probabilities(photo("coffee"))
    assert probs.shape == (1000,) and probs.sum() == pytest.approx(1.0, abs=1e-4)


def test_the_family_name_lets_the_self_check_choose() -> None:
    chosen = Classifier()  # "efficientnet_lite0", int8 "auto"
    assert chosen.choice.family == "efficientnet_lite0"
    assert chosen.spec.name == chosen.choice.name in {"efficientnet_lite0_int8",
                                                      "efficientnet_lite0_fp32"}
    assert Classifier(int8="never").spec.name == "efficientnet_lite0_fp32"


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


def test_grey_and_rgba_inputs_are_accepted(classifier: Classifier) -> None:
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
