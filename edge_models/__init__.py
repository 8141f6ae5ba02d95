"""edge_models: the model registry, ONNX Runtime sessions, quantization and benchmarks."""

from edge_models.cache import default_cache_dir
from edge_models.cpu import CpuFeatures, cpu_features
from edge_models.registry import ModelSpec, get_spec, load_registry, open_session, resolve_path
from edge_models.sessions import (
    ModelFileError,
    available_providers,
    choose_providers,
    create_session,
    sha256_file,
)

__all__ = [
    "CpuFeatures",
    "ModelFileError",
    "ModelSpec",
    "available_providers",
    "choose_providers",
    "cpu_features",
    "create_session",
    "default_cache_dir",
    "get_spec",
    "load_registry",
    "open_session",
    "resolve_path",
    "sha256_file",
]
