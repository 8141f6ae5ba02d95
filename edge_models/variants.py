"""Which variant of a model to run here: int8 only where it agrees with fp32 on this CPU.

int8 kernels are not the same on every CPU (``edge_models.cpu``): the same int8
file can agree with fp32 on one machine and not on another. So when a model
that has an int8 variant is loaded, ``choose_variant`` runs both variants on a
few bundled frames (``edge_models/data/selfcheck/``) with this CPU, this
onnxruntime and these execution providers, and takes int8 only when

- it agrees with fp32: the same top-1 class on at least ``MIN_TOP1`` of the
  frames and a mean cosine similarity of the logits of at least
  ``MIN_SIMILARITY`` (recognition); the same text boxes and a mean correlation of the
  text probability maps of at least ``MIN_MAP_SIMILARITY`` (OCR detection); and
- it is clearly faster: at most ``MAX_SPEED_RATIO`` of fp32's median time.

Otherwise fp32, with the reason. The decision is cached in the user cache
folder (``edge_models.cache``), keyed by both files' sha256, the onnxruntime
version, the execution providers and the CPU's features, so the check (well
under a second for EfficientNet-Lite0) runs once per machine and model.

``mode``: ``auto`` (check), ``always`` (int8 whenever there is one, unchecked),
``never`` (fp32). A name that ends in ``_fp32`` or ``_int8`` pins that variant;
a family name (``efficientnet_lite0``, or an fp32 name without the suffix such
as ``ppocr_det``) lets the check choose.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.cache import default_cache_dir, read_json, write_json_atomic
from edge_models.cpu import CpuFeatures, cpu_features
from edge_models.errors import BadInputError, ModelFileError
from edge_models.registry import MANIFEST, ModelSpec, check, get_spec, load_registry
from edge_models.sessions import create_session

__all__ = [
    "CACHE_FILE",
    "INT8_MODES",
    "MAX_SPEED_RATIO",
    "MIN_MAP_SIMILARITY",
    "MIN_SIMILARITY",
    "MIN_TOP1",
    "SELFCHECK_DIR",
    "CheckResult",
    "Choice",
    "cached_choice",
    "choose_variant",
    "resolve_family",
    "run_check",
    "selfcheck_frames",
    "write_selfcheck_frames",
]

INT8_MODES = ("auto", "always", "never")
MIN_TOP1 = 0.9
MIN_SIMILARITY = 0.98
MIN_BOX_AGREEMENT = 0.9
# The text probability maps' Pearson correlation with fp32's, mean over the frames. The
# 8-bit detector on x86 without VNNI (16-bit sums that saturate, QEMU Haswell) matched the
# check frame's boxes but gave 0.9947 there, and dropped a box on 1 of 8 bench signs; on
# AMX 0.9989 (docs/models.md).
MIN_MAP_SIMILARITY = 0.997
# "Faster" at load time: clearly so, with room for a busy CPU's noise (the benchmark's goal
# for the shipped recipe is 0.67x; measured 0.47-0.53x on 2 cores).
MAX_SPEED_RATIO = 0.8
SELFCHECK_OCR_SIDE_PX = 320
# Photos whose license is plain (CC0 or public domain: see edge_models/data/PROVENANCE.md).
SELFCHECK_PHOTOS = ("coffee", "chelsea", "camera", "rocket", "grace_hopper", "astronaut")
SELFCHECK_DIR = Path(__file__).with_name("data") / "selfcheck"
CACHE_FILE = "variants.json"
CACHE_VERSION = 1
_TIMING_PASSES = 2
_WARMUP_RUNS = 2


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """int8 against fp32 on the self-check frames, on this machine."""

    frames: int
    agreement: float
    similarity: float | None
    speed_ratio: float
    seconds: float


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The variant to load (``name``, a registry name) and why.

    ``agreement`` (top-1, or text boxes matched) and ``speed_ratio`` (int8 time / fp32
    time) are the self-check's, None when no check was run; ``cached`` says the
    decision came from the cache.
    """

    family: str
    name: str
    variant: str
    reason: str
    mode: str
    isa_class: str
    agreement: float | None = None
    similarity: float | None = None
    speed_ratio: float | None = None
    cached: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- names ----------------------------------------------------------------------------------

def resolve_family(model: str, *, manifest: Path = MANIFEST) -> tuple[str, str | None, str | None]:
    """``(fp32 name, int8 name or None, pinned name or None)`` for a model or family name."""
    registry = load_registry(manifest)
    if model in registry:
        spec = registry[model]
        fp32 = spec.quantized_from or model
        int8 = _int8_of(fp32, manifest)
        pinned = model if model.endswith(("_fp32", "_int8")) or spec.quantized_from else None
        return fp32, int8, pinned
    if f"{model}_fp32" in registry:
        fp32 = f"{model}_fp32"
        return fp32, _int8_of(fp32, manifest), None
    families = sorted({n.removesuffix("_fp32") for n in registry if n.endswith("_fp32")})
    raise ModelFileError(f"unknown model {model!r} (families: {', '.join(families)}; "
                         "or a registry name, see `glasses-models list`)")


def _int8_of(fp32: str, manifest: Path) -> str | None:
    found = [s.name for s in load_registry(manifest).values() if s.quantized_from == fp32]
    return found[0] if found else None


# -- frames ---------------------------------------------------------------------------------

def _frame_files(prefix: str) -> list[Path]:
    return sorted(SELFCHECK_DIR.glob(f"{prefix}_*.jpg"))


def selfcheck_frames(task: str) -> list[np.ndarray]:
    """The bundled frames for a task's self-check, as the model's input tensors."""
    from edge_models.photos import load_image

    if task == "image-classification":
        from edge_models.recognition import preprocess_imagenet

        return [preprocess_imagenet(load_image(p)) for p in _frame_files("recognition")]
    if task == "ocr-detection":
        from edge_models.ocr import det_preprocess

        # At 320 px (not the 736 px of reading) the check costs a fifth; same kernels.
        frames = [det_preprocess(load_image(p), SELFCHECK_OCR_SIDE_PX) for p in _frame_files("ocr")]
        return [f for f in frames if f is not None]
    return []


def write_selfcheck_frames(folder: Path = SELFCHECK_DIR) -> list[Path]:
    """Rebuild the bundled frames from the sample photos (dev extra) and rendered signs.

    Recognition: ``SELFCHECK_PHOTOS`` and seeded crops of them on which fp32
    EfficientNet-Lite0 is at least 50% sure of its top class (the self-check is about
    the kernels, not the long tail), at most 4 views a photo, 256 px on the shorter
    side. OCR: one rendered sign over a photo.
    """
    import cv2

    from edge_models.photos import photo
    from edge_models.recognition import Classifier
    from edge_models.signs import sign_set

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.jpg"):
        old.unlink()
    classifier = Classifier(model="efficientnet_lite0_fp32")
    rng = np.random.default_rng(4242)
    written: list[Path] = []
    for name in SELFCHECK_PHOTOS:
        image = photo(name)
        h, w = image.shape[:2]
        views = [image]
        for _ in range(6):
            s = rng.uniform(0.55, 0.9)
            ch, cw = int(h * s), int(w * s)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            views.append(np.ascontiguousarray(image[y:y + ch, x:x + cw]))
        kept = 0
        for view in views:
            if classifier.classify(view, 1)[0][1] < 0.5 or len(written) >= 12 or kept >= 4:
                continue
            kept += 1
            scale = 256 / min(view.shape[:2])
            small = cv2.resize(view, (round(view.shape[1] * scale), round(view.shape[0] * scale)),
                               interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
            path = folder / f"recognition_{len(written):02d}_{name}.jpg"
            cv2.imwrite(str(path), small, [cv2.IMWRITE_JPEG_QUALITY, 92])
            written.append(path)
    for i, sign in enumerate(sign_set(1, seed=777)):
        path = folder / f"ocr_{i:02d}_sign.jpg"
        cv2.imwrite(str(path), sign.image_bgr, [cv2.IMWRITE_JPEG_QUALITY, 92])
        written.append(path)
    return written


# -- the check ------------------------------------------------------------------------------

def _top1_and_similarity(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    top1 = float(np.mean([int(a.argmax()) == int(b.argmax()) for a, b in zip(ref, got,
                                                                             strict=True)]))
    cos = [float(np.dot(a.ravel(), b.ravel())
                 / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12))
           for a, b in zip(ref, got, strict=True)]
    return top1, float(np.mean(cos))


def _boxes(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, float]:
    from edge_models.bench import _boxes_agree

    correlation = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(ref, got,
                                                                                strict=True)]
    return _boxes_agree(ref, got), float(np.nan_to_num(np.mean(correlation)))


_METRICS: dict[str, Callable[[list[np.ndarray], list[np.ndarray]], tuple[float, float]]] = {
    "image-classification": _top1_and_similarity,
    "ocr-detection": _boxes,
}


def run_check(fp32: ModelSpec, int8: ModelSpec, *, providers: Sequence[str] = (),
              intra_op_threads: int = 2) -> CheckResult:
    """Both variants on the bundled frames: agreement and the median-time ratio."""
    if fp32.task not in _METRICS:
        raise BadInputError(f"no self-check for {fp32.task!r} models")
    frames = selfcheck_frames(fp32.task)
    if not frames:
        raise ModelFileError(f"no self-check frames for {fp32.task!r} in {SELFCHECK_DIR} "
                             "(reinstall glasses-agent)")
    start = time.perf_counter()
    sessions = [create_session(check(s), name=s.name, providers=providers,
                               intra_op_threads=intra_op_threads) for s in (fp32, int8)]
    feeds = [s.get_inputs()[0].name for s in sessions]
    outputs: list[list[np.ndarray]] = [[], []]
    times: list[list[float]] = [[], []]
    for i, s in enumerate(sessions):  # warm-up: first runs allocate and pack weights
        for _ in range(_WARMUP_RUNS):
            s.run(None, {feeds[i]: frames[0]})
    for run in range(_TIMING_PASSES):
        for x in frames:
            for i, s in enumerate(sessions):
                t = time.perf_counter()
                out = s.run(None, {feeds[i]: x})[0]
                times[i].append(time.perf_counter() - t)
                if run == 0:
                    outputs[i].append(out)
    agreement, similarity = _METRICS[fp32.task](outputs[0], outputs[1])
    ratio = float(np.median(times[1]) / max(float(np.median(times[0])), 1e-9))
    return CheckResult(frames=len(frames), agreement=round(agreement, 4),
                       similarity=None if np.isnan(similarity) else round(similarity, 4),
                       speed_ratio=round(ratio, 3), seconds=round(time.perf_counter() - start, 3))


def _verdict(task: str, result: CheckResult, isa: str) -> tuple[bool, str]:
    if task == "image-classification":
        agrees = (result.agreement >= MIN_TOP1
                  and (result.similarity or 0.0) >= MIN_SIMILARITY)
        measured = (f"top-1 equal on {result.agreement:.0%} of {result.frames} frames, "
                    f"logit similarity {result.similarity:.3f}")
        needed = f"needs {MIN_TOP1:.0%} and {MIN_SIMILARITY}"
    else:
        agrees = (result.agreement >= MIN_BOX_AGREEMENT
                  and (result.similarity or 0.0) >= MIN_MAP_SIMILARITY)
        measured = (f"text boxes matched {result.agreement:.0%} on {result.frames} frames, "
                    f"map correlation {result.similarity or 0.0:.4f}")
        needed = f"needs {MIN_BOX_AGREEMENT:.0%} and {MIN_MAP_SIMILARITY}"
    if not agrees:
        return False, f"int8 disagrees with fp32 on this CPU ({isa}): {measured} ({needed})"
    if result.speed_ratio > MAX_SPEED_RATIO:
        return False, (f"int8 agrees ({measured}) but is not faster enough here: "
                       f"{result.speed_ratio:.2f}x fp32's time (needs at most "
                       f"{MAX_SPEED_RATIO}x)")
    return True, (f"int8 agrees with fp32 on this CPU ({isa}): {measured}; "
                  f"{result.speed_ratio:.2f}x fp32's time")


def _cache_key(fp32: ModelSpec, int8: ModelSpec, providers: Sequence[str],
               cpu: CpuFeatures) -> str:
    import onnxruntime

    from edge_models.sessions import choose_providers

    return "|".join((f"int8={int8.sha256}", f"fp32={fp32.sha256}",
                     f"onnxruntime={onnxruntime.__version__}",
                     f"providers={','.join(choose_providers(providers))}", f"cpu={cpu.key()}",
                     f"check={_check_id(fp32.task)}"))


def _check_id(task: str) -> str:
    """What the check itself is (its frames and bounds): a new one decides afresh."""
    import hashlib

    prefix = "recognition" if task == "image-classification" else "ocr"
    files = [f"{p.name}:{p.stat().st_size}" for p in _frame_files(prefix)]
    bounds = (MIN_TOP1, MIN_SIMILARITY, MIN_BOX_AGREEMENT, MIN_MAP_SIMILARITY, MAX_SPEED_RATIO,
              SELFCHECK_OCR_SIDE_PX)
    return hashlib.sha256(repr((files, bounds)).encode()).hexdigest()[:12]


def _cache_path(cache_dir: Path | None) -> Path:
    return (cache_dir or default_cache_dir()) / CACHE_FILE


def _from_cache(path: Path, key: str) -> dict[str, Any] | None:
    data = read_json(path)
    if data is None or data.get("version") != CACHE_VERSION:
        return None
    entry = data.get("choices", {}).get(key) if isinstance(data.get("choices"), dict) else None
    needed = {"variant", "reason"}
    if not isinstance(entry, dict) or not needed <= set(entry) \
            or entry["variant"] not in ("int8", "fp32"):
        return None
    return entry


def _store(path: Path, key: str, entry: dict[str, Any]) -> None:
    data = read_json(path)
    if data is None or data.get("version") != CACHE_VERSION \
            or not isinstance(data.get("choices"), dict):
        data = {"version": CACHE_VERSION, "choices": {}}
    data["choices"][key] = entry
    try:
        write_json_atomic(path, data)
    except OSError:  # a read-only cache: the check runs again next time, nothing breaks
        pass


def _pinned(family: str, fp32: str, int8: str | None, mode: str, isa: str,
            pinned: str | None) -> Choice | None:
    if pinned is not None:
        variant = "fp32" if pinned == fp32 else "int8"
        return Choice(family=family, name=pinned, variant=variant, mode=mode, isa_class=isa,
                      reason=f"{pinned} named explicitly (name the family "
                             f"{fp32.removesuffix('_fp32')!r} to let the self-check choose)")
    if int8 is None:
        return Choice(family=family, name=fp32, variant="fp32", mode=mode, isa_class=isa,
                      reason="no int8 variant registered")
    if mode == "never":
        return Choice(family=family, name=fp32, variant="fp32", mode=mode, isa_class=isa,
                      reason="int8 = \"never\"")
    if mode == "always":
        return Choice(family=family, name=int8, variant="int8", mode=mode, isa_class=isa,
                      reason="int8 = \"always\" (not checked on this CPU)")
    return None


def _check_mode(mode: str) -> None:
    if mode not in INT8_MODES:
        raise BadInputError(f"int8 mode {mode!r} is not one of {', '.join(INT8_MODES)}")


def cached_choice(model: str, *, mode: str = "auto", providers: Sequence[str] = (),
                  manifest: Path = MANIFEST, cache_dir: Path | None = None) -> Choice | None:
    """The decision ``choose_variant`` would return, without running a check: None when
    the self-check has not run yet on this machine (for this model, onnxruntime, CPU)."""
    _check_mode(mode)
    fp32, int8, pinned = resolve_family(model, manifest=manifest)
    cpu = cpu_features()
    fixed = _pinned(model, fp32, int8, mode, cpu.isa_class, pinned)
    if fixed is not None or int8 is None:
        return fixed
    fp32_spec, int8_spec = get_spec(fp32, manifest=manifest), get_spec(int8, manifest=manifest)
    entry = _from_cache(_cache_path(cache_dir), _cache_key(fp32_spec, int8_spec, providers, cpu))
    return None if entry is None else _choice_from(entry, model, fp32, int8, mode, cpu, True)


def _choice_from(entry: dict[str, Any], family: str, fp32: str, int8: str, mode: str,
                 cpu: CpuFeatures, cached: bool) -> Choice:
    def number(key: str) -> float | None:
        value = entry.get(key)
        return float(value) if isinstance(value, int | float) else None

    variant = str(entry["variant"])
    return Choice(family=family, name=int8 if variant == "int8" else fp32, variant=variant,
                  reason=str(entry["reason"]), mode=mode, isa_class=cpu.isa_class,
                  agreement=number("agreement"), similarity=number("similarity"),
                  speed_ratio=number("speed_ratio"), cached=cached)


def choose_variant(
    model: str,
    *,
    mode: str = "auto",
    providers: Sequence[str] = (),
    intra_op_threads: int = 2,
    manifest: Path = MANIFEST,
    cache_dir: Path | None = None,
) -> Choice:
    """The variant of ``model`` (a family or registry name) to load here, and why."""
    _check_mode(mode)
    fp32, int8, pinned = resolve_family(model, manifest=manifest)
    cpu = cpu_features()
    fixed = _pinned(model, fp32, int8, mode, cpu.isa_class, pinned)
    if fixed is not None or int8 is None:
        assert fixed is not None
        return fixed
    fp32_spec, int8_spec = get_spec(fp32, manifest=manifest), get_spec(int8, manifest=manifest)
    path = _cache_path(cache_dir)
    key = _cache_key(fp32_spec, int8_spec, providers, cpu)
    entry = _from_cache(path, key)
    if entry is not None:
        return _choice_from(entry, model, fp32, int8, mode, cpu, True)
    result = run_check(fp32_spec, int8_spec, providers=providers,
                       intra_op_threads=intra_op_threads)
    ok, reason = _verdict(fp32_spec.task, result, cpu.isa_class)
    entry = {"variant": "int8" if ok else "fp32", "reason": reason,
             "agreement": result.agreement, "similarity": result.similarity,
             "speed_ratio": result.speed_ratio, "frames": result.frames,
             "check_seconds": result.seconds, "int8": int8, "fp32": fp32,
             "checked_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _store(path, key, entry)
    return _choice_from(entry, model, fp32, int8, mode, cpu, False)
