"""Perception models behind one small interface: a perception step.

A step has a ``name``, the registry ``models`` it runs, and ``run(image)``, which
returns its part of the ``Perception`` (a ``PerceptionPart``: the fields it fills).
``Perceiver`` runs its steps in order on a frame, times each, and merges the
parts. The steps the glasses run are registered below, one line each: a factory
that builds the step from the configuration (or returns None when
``[perception]`` turns it off).

To add a perception model (docs/architecture.md walks through one): its entry in
``edge_models/manifest.toml``; a module with its step and a ``create(config)``;
one line in ``STEPS``. What it finds goes in ``PerceptionPart.extra`` (name -> a
short line), which reaches the cloud as ``Facts.extra`` and the prompts as a line.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from glasses_agent.frames import Barcode, Label, TextLine

if TYPE_CHECKING:
    from glasses_agent.config import Config

__all__ = ["STEPS", "PerceptionPart", "PerceptionStep", "StepFactory", "build_steps"]

UInt8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True, slots=True, kw_only=True)
class PerceptionPart:
    """What one step found; None: a field it does not fill."""

    labels: tuple[Label, ...] | None = None
    center_labels: tuple[Label, ...] | None = None
    text: tuple[TextLine, ...] | None = None
    faces: tuple[tuple[int, int, int, int], ...] | None = None
    barcodes: tuple[Barcode, ...] | None = None
    # Anything else, for steps added later: name -> one short line ("the wall is 2 m away").
    extra: Mapping[str, str] = field(default_factory=dict)


class PerceptionStep(Protocol):
    """One perception model (or a few that work together) on a BGR frame."""

    name: str
    models: tuple[str, ...]

    def run(self, image_bgr: UInt8Array) -> PerceptionPart: ...


StepFactory = Callable[["Config"], PerceptionStep | None]

# The steps, in the order they run on each frame: a name and "module:factory" (imported
# only when the perceiver is built, so listing them costs nothing). One line each.
STEPS: tuple[tuple[str, str], ...] = (
    ("recognition", "glasses_agent.edge.perception.recognition:create_step"),
    ("ocr", "glasses_agent.edge.perception.text:create_step"),
    ("faces", "glasses_agent.edge.perception.privacy:create_face_step"),
    ("barcodes", "glasses_agent.edge.perception.barcodes:create_step"),
)


def build_steps(config: Config) -> list[PerceptionStep]:
    """Every registered step ``config`` turns on, built (models loaded), in order."""
    steps = []
    for name, where in STEPS:
        module, _, factory = where.partition(":")
        create: StepFactory = getattr(importlib.import_module(module), factory)
        step = create(config)
        if step is not None:
            if step.name != name:
                raise ValueError(f"perception step {where} calls itself {step.name!r}, "
                                 f"registered as {name!r}")
            steps.append(step)
    return steps
