"""edge_models: the model registry, ONNX Runtime sessions, quantization and benchmarks."""

from edge_models.registry import ModelSpec, get_spec, load_registry, open_session, resolve_path
from edge_models.sessions import (
    ModelFileError,
    available_providers,
    choose_providers,
    create_session,
    sha256_file,
)

__all__ = [
    "ModelFileError",
    "ModelSpec",
    "available_providers",
    "choose_providers",
    "create_session",
    "get_spec",
    "load_registry",
    "open_session",
    "resolve_path",
    "sha256_file",
]
