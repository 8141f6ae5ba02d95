"""The model registry: every model's name, task, file, sha256, license and source.

The registry is ``manifest.toml`` beside this file. A model's ``resource`` is
``package:relative/path`` (a file inside an installed package, ``edge_models``
included), so nothing is downloaded: weights come from installed packages or
from files the project builds with a kept script.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from edge_models.sessions import ModelFileError, check_file, create_session

__all__ = ["ModelSpec", "get_spec", "load_registry", "open_session", "resolve_path"]

MANIFEST = Path(__file__).with_name("manifest.toml")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSpec:
    name: str
    task: str
    resource: str
    sha256: str
    size_bytes: int
    license: str
    source: str
    inputs: str = ""
    preprocessing: str = ""
    labels: str = ""
    notes: str = ""
    # The pip package that ships the file, for "how to fix" messages.
    package: str = ""


@cache
def load_registry(path: Path = MANIFEST) -> Mapping[str, ModelSpec]:
    with path.open("rb") as f:
        data: dict[str, Any] = tomllib.load(f)
    return {name: ModelSpec(name=name, **fields) for name, fields in data["models"].items()}


def get_spec(name: str) -> ModelSpec:
    registry = load_registry()
    if name not in registry:
        raise ModelFileError(f"unknown model {name!r} (known: {', '.join(sorted(registry))})")
    return registry[name]


def resolve_path(spec: ModelSpec) -> Path:
    """Where the model's file is on this machine (it may not exist: see ``check_file``)."""
    package, _, relative = spec.resource.partition(":")
    if importlib.util.find_spec(package) is None:
        hint = f"pip install {spec.package}" if spec.package else "see `glasses-models list`"
        raise ModelFileError(
            f"model {spec.name!r} comes from the package {package!r}, which is not installed "
            f"({hint})"
        )
    return Path(str(importlib.resources.files(package).joinpath(relative)))


def open_session(
    name: str,
    *,
    providers: tuple[str, ...] = (),
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
) -> Any:
    """An ONNX Runtime session for the registered model ``name``, hash checked."""
    spec = get_spec(name)
    return create_session(
        resolve_path(spec),
        sha256=spec.sha256,
        name=name,
        providers=providers,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def check(spec: ModelSpec) -> Path:
    """Resolve and hash-check one model's file."""
    return check_file(resolve_path(spec), spec.sha256, name=spec.name)
