"""What is in view: real models on real photos, through the perceiver."""

from __future__ import annotations

import sys
from datetime import UTC
from typing import Any

import cv2
import numpy as np
import pytest
from support.images import face_detector, paste, perceiver, photo

from glasses_agent.clock import ManualClock
from glasses_agent.config import Config
from glasses_agent.edge.perception.loop import Perceiver
from glasses_agent.edge.perception.privacy import FaceStep
from glasses_agent.edge.perception.recognition import (
    NOT_SURE,
    center_crop,
    describe_view,
    in_view,
)
from glasses_agent.edge.perception.steps import PerceptionPart
from glasses_agent.edge.sources.camera import PrivacySwitch
from glasses_agent.frames import Label, Perception, SpeechStarted, VideoFrame
from glasses_agent.stages import Pipeline

CATS = {"tiger cat", "Egyptian cat", "tabby", "Persian cat", "Siamese cat", "lynx"}


def _frame(image: np.ndarray, t: float = 1.5) -> VideoFrame:
    return VideoFrame(timestamp_s=t, image_bgr=image, index=7, source="test")


def _perceive(name: str) -> Perception:
    return perceiver().perceive(_frame(photo(name)))


def test_coffee_is_espresso_or_a_cup() -> None:
    result = _perceive("coffee")
    names = [label.name for label in result.labels]
    assert len(names) == 5
    assert {"espresso", "cup", "coffee mug"} <= set(names)
    assert names[0] == "espresso"
    assert describe_view(result, min_label_score=0.25) == "espresso"
    scores = [label.score for label in result.labels]
    assert scores == sorted(scores, reverse=True) and 0.0 < scores[0] <= 1.0
    assert result.timestamp_s == 1.5
    assert set(result.timings_ms) == {"recognition", "ocr", "faces", "barcodes"}
    assert result.faces == () and result.barcodes == ()


def test_chelsea_is_a_cat() -> None:
    result = _perceive("chelsea")
    assert result.labels[0].name in CATS
    assert sum(label.score for label in result.labels if label.name in CATS) > 0.5
    assert describe_view(result, min_label_score=0.25) in CATS


def test_below_the_threshold_the_answer_is_not_sure() -> None:
    # The astronaut photo has no confident ImageNet class (helmets, bobsleds: all weak).
    result = _perceive("astronaut")
    best = max(label.score for label in result.labels + result.center_labels)
    assert best < 0.25
    assert describe_view(result, min_label_score=0.25) == NOT_SURE
    assert describe_view(result, min_label_score=best / 2) != NOT_SURE


def test_in_view_prefers_a_sure_centre() -> None:
    whole = (Label(name="desk", score=0.6),)
    centre = (Label(name="coffee mug", score=0.4),)
    assert in_view(whole, centre, min_label_score=0.3) == centre[0]
    assert in_view(whole, centre, min_label_score=0.5) == whole[0]
    assert in_view(whole, centre, min_label_score=0.7) is None
    assert in_view((), (), min_label_score=0.0) is None


def test_the_centre_crop_sees_what_the_wearer_looks_at() -> None:
    # A cat in the middle of a street of coffee cups: the centre says cat.
    canvas = cv2.resize(photo("coffee"), (960, 540), interpolation=cv2.INTER_AREA)
    cat = cv2.resize(photo("chelsea"), (330, 220), interpolation=cv2.INTER_AREA)
    scene = paste(canvas, cat, (960 - 330) // 2, (540 - 220) // 2)
    crop = center_crop(scene, 0.5)
    assert crop.shape[:2] == (270, 270)
    result = perceiver().perceive(_frame(scene))
    assert result.center_labels[0].name in CATS
    assert describe_view(result, min_label_score=0.25) in CATS


@pytest.mark.parametrize("kind", ["mtcnn", "haar"])
@pytest.mark.parametrize("name,centre", [("astronaut", (225, 115)), ("grace_hopper", (260, 220))])
def test_faces_are_found_on_people(kind: str, name: str, centre: tuple[int, int]) -> None:
    faces = face_detector(kind).detect(photo(name))
    assert len(faces) == 1
    x0, y0, x1, y1, score = faces[0]
    assert x0 < centre[0] < x1 and y0 < centre[1] < y1 and score > 0.5


@pytest.mark.parametrize("kind", ["mtcnn", "haar"])
@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_faces_on_coffee_or_a_cat(kind: str, name: str) -> None:
    assert face_detector(kind).detect(photo(name)) == []


def test_the_perceiver_is_a_stage() -> None:
    clock = ManualClock(10.0)
    privacy = PrivacySwitch()
    stage = Perceiver([FaceStep(face_detector("haar"), kind="haar")], privacy=privacy)
    pipeline = Pipeline([stage])
    frame = _frame(photo("grace_hopper"), t=9.5)
    out = pipeline.push(frame, clock.now_s())
    assert out[0] is frame and isinstance(out[1], Perception)
    assert len(out[1].faces) == 1 and out[1].labels == () and out[1].timestamp_s == 9.5
    assert set(out[1].timings_ms) == {"faces"}
    other = SpeechStarted(timestamp_s=10.0)
    assert pipeline.push(other, clock.now_s()) == [other]
    privacy.set(True)
    assert pipeline.push(frame, clock.now_s()) == []  # the camera path is off


def test_a_perception_model_is_a_step_and_one_line_registers_it(monkeypatch: Any) -> None:
    """The walkthrough in docs/architecture.md: a new step, registered by one line, reaches
    the perception (and so the facts the cloud gets, and the prompt)."""
    import glasses_agent.edge.perception.steps as steps

    class Brightness:
        name = "brightness"
        models = ()

        def run(self, image_bgr: Any) -> PerceptionPart:
            level = float(image_bgr.mean()) / 255
            return PerceptionPart(extra={"light": "bright" if level > 0.5 else "dim"})

    module = type(sys)("brightness_step")
    module.create = lambda config: Brightness()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "brightness_step", module)
    monkeypatch.setattr(steps, "STEPS", (*steps.STEPS[2:3],
                                         ("brightness", "brightness_step:create")))
    perceiver = Perceiver.from_config(Config())
    assert [s.name for s in perceiver.steps] == ["faces", "brightness"]
    seen = perceiver.perceive(_frame(photo("astronaut"), t=1.0))
    assert seen.extra == {"light": "dim"} and set(seen.timings_ms) == {"faces", "brightness"}
    from datetime import datetime

    from glasses_agent.edge.router import facts_from_perception

    facts = facts_from_perception(seen, now=datetime(2026, 1, 1, tzinfo=UTC))
    assert facts.extra == {"light": "dim"}


def test_public_exports() -> None:
    import glasses_agent.edge.perception as perception
    import glasses_agent.edge.sources as sources
    import glasses_agent.edge.sources.camera as camera

    for module in (perception, sources, camera):
        assert len(set(module.__all__)) == len(module.__all__)
        for name in module.__all__:
            assert hasattr(module, name), (module.__name__, name)
