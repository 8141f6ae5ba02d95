"""fp32 against int8 of the same model, side by side, in one run.

For each registered fp32 model with an int8 variant: latency (median and p95 of
single-frame runs, the two variants interleaved frame by frame so that a noisy,
shared CPU slows both alike), file size, and how often the int8 output agrees
with the fp32 output on real inputs:

- recognition: top-1 class equal, on photos (whole and seeded crops) that are not
  the calibration crops;
- OCR detection: text boxes matched at IoU >= 0.5 (matched / the larger count);
- OCR recognition: the decoded text line identical;
- OCR orientation: the same 0/180 decision.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.errors import BadInputError
from edge_models.registry import MANIFEST, check, get_spec, load_registry, quantized_variants
from edge_models.sessions import create_session

__all__ = ["PairResult", "VariantResult", "bench", "benchable", "format_table"]

EVAL_SEED = 900
CONFIDENT = 0.25


@dataclass(frozen=True, slots=True, kw_only=True)
class VariantResult:
    name: str
    provider: str
    size_bytes: int
    latency_median_ms: float
    latency_p95_ms: float


@dataclass(frozen=True, slots=True, kw_only=True)
class PairResult:
    model: str
    task: str
    frames: int
    fp32: VariantResult
    int8: VariantResult
    # int8 median latency / fp32 median latency: below 1 is faster.
    speed_ratio: float
    agreement: float
    agreement_metric: str
    # Recognition only: agreement on the frames where fp32's top-1 probability is at least
    # CONFIDENT (what the perception loop reports), and how many frames that is.
    agreement_confident: float | None = None
    confident_frames: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def benchable(*, manifest: Path = MANIFEST) -> list[str]:
    """The fp32 models that have a registered int8 variant."""
    return [name for name in load_registry(manifest)
            if quantized_variants(name, manifest=manifest)]


def _recognition_inputs() -> list[np.ndarray]:
    from edge_models.photos import OBJECT_PHOTOS, photo
    from edge_models.recognition import preprocess_imagenet

    rng = np.random.default_rng(EVAL_SEED)
    frames = []
    for name in OBJECT_PHOTOS:
        image = photo(name)
        h, w = image.shape[:2]
        frames.append(preprocess_imagenet(image))
        for _ in range(3):
            s = rng.uniform(0.6, 0.95)
            ch, cw = int(h * s), int(w * s)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            frames.append(preprocess_imagenet(np.ascontiguousarray(image[y:y + ch, x:x + cw])))
    return frames


def _signs() -> list[np.ndarray]:
    from edge_models.signs import sign_set

    return [s.image_bgr for s in sign_set(8, seed=EVAL_SEED)]


def _det_inputs() -> list[np.ndarray]:
    from edge_models.ocr import det_preprocess

    return [x for x in (det_preprocess(im) for im in _signs()) if x is not None]


def _crops() -> list[np.ndarray]:
    from edge_models.ocr import TextReader, crop_quad

    reader = TextReader()
    crops: list[np.ndarray] = []
    for image in _signs():
        crops.extend(crop_quad(image, q.copy()) for q in reader.detect(image))
    return reader.orient(crops)


def _rec_inputs() -> list[np.ndarray]:
    from edge_models.ocr import REC_SHAPE, rec_preprocess

    _, height, width = REC_SHAPE
    return [rec_preprocess(c, max(width / height, c.shape[1] / c.shape[0]))[None]
            for c in _crops()]


def _cls_inputs() -> list[np.ndarray]:
    from edge_models.ocr import cls_preprocess

    crops = _crops()
    return [cls_preprocess(c)[None] for c in crops + [c[::-1, ::-1] for c in crops]]


def _top1(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return float(np.mean([int(x.argmax()) == int(y.argmax()) for x, y in zip(a, b, strict=True)]))


def _boxes_agree(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    from edge_models.ocr import db_boxes

    scores = []
    for pa, pb in zip(a, b, strict=True):
        h, w = pa.shape[2:]
        ba, _ = db_boxes(pa[0, 0], h, w)
        bb, _ = db_boxes(pb[0, 0], h, w)
        if len(ba) == 0 and len(bb) == 0:
            scores.append(1.0)
            continue
        ra = [(q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()) for q in ba]
        rb = [(q[:, 0].min(), q[:, 1].min(), q[:, 0].max(), q[:, 1].max()) for q in bb]
        matched = sum(1 for r in ra if any(_iou(r, s) >= 0.5 for s in rb))
        scores.append(matched / max(len(ra), len(rb)))
    return float(np.mean(scores))


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _text_agree(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    from edge_models.ocr import TextReader, ctc_greedy

    chars = TextReader().characters
    same = [ctc_greedy(x, chars)[0][0] == ctc_greedy(y, chars)[0][0]
            for x, y in zip(a, b, strict=True)]
    return float(np.mean(same))


_TASKS: dict[str, tuple[Callable[[], list[np.ndarray]],
                        Callable[[list[np.ndarray], list[np.ndarray]], float], str]] = {
    "image-classification": (_recognition_inputs, _top1, "top-1 class equal"),
    "ocr-detection": (_det_inputs, _boxes_agree, "text boxes matched at IoU>=0.5"),
    "ocr-recognition": (_rec_inputs, _text_agree, "decoded text line equal"),
    "ocr-orientation": (_cls_inputs, _top1, "same 0/180 decision"),
}


def _session(name: str, providers: Sequence[str], threads: int, manifest: Path) -> Any:
    return create_session(check(get_spec(name, manifest=manifest)), name=name, providers=providers,
                          intra_op_threads=threads)


def bench_pair(
    name: str,
    *,
    providers: Sequence[str] = (),
    intra_op_threads: int = 2,
    runs: int = 3,
    warmup: int = 2,
    manifest: Path = MANIFEST,
) -> PairResult:
    """fp32 model ``name`` against its int8 variant: ``runs`` passes over the inputs."""
    spec = get_spec(name, manifest=manifest)
    variants = quantized_variants(name, manifest=manifest)
    if not variants:
        raise BadInputError(f"model {name!r} has no int8 variant to compare "
                            f"(benchable: {', '.join(benchable(manifest=manifest))})")
    if spec.task not in _TASKS:
        raise BadInputError(f"no benchmark inputs for {spec.task!r} models")
    make_inputs, agree, metric = _TASKS[spec.task]
    inputs = make_inputs()
    int8_spec = variants[0]
    sessions = {v: _session(v, providers, intra_op_threads, manifest)
                for v in (name, int8_spec.name)}
    feed = {v: s.get_inputs()[0].name for v, s in sessions.items()}
    outputs: dict[str, list[np.ndarray]] = {v: [] for v in sessions}
    times: dict[str, list[float]] = {v: [] for v in sessions}
    for v, s in sessions.items():
        for x in inputs[:warmup]:
            s.run(None, {feed[v]: x})
    for run in range(runs):
        for x in inputs:
            for v, s in sessions.items():  # interleaved: both see the same CPU load
                start = time.perf_counter()
                out = s.run(None, {feed[v]: x})[0]
                times[v].append(time.perf_counter() - start)
                if run == 0:
                    outputs[v].append(out)

    def result(v: str) -> VariantResult:
        t = np.array(times[v]) * 1000
        return VariantResult(
            name=v, provider=sessions[v].get_providers()[0],
            size_bytes=check(get_spec(v, manifest=manifest)).stat().st_size,
            latency_median_ms=round(float(np.median(t)), 3),
            latency_p95_ms=round(float(np.percentile(t, 95)), 3),
        )

    fp32, int8 = result(name), result(int8_spec.name)
    confident: dict[str, Any] = {}
    if spec.task == "image-classification":
        ref, got = outputs[name], outputs[int8_spec.name]
        sure = [i for i, x in enumerate(ref) if _softmax_max(x) >= CONFIDENT]
        if sure:
            confident = {
                "agreement_confident": round(_top1([got[i] for i in sure],
                                                   [ref[i] for i in sure]), 4),
                "confident_frames": len(sure),
            }
    return PairResult(
        model=name, task=spec.task, frames=len(inputs), fp32=fp32, int8=int8,
        speed_ratio=round(int8.latency_median_ms / fp32.latency_median_ms, 3),
        agreement=round(agree(outputs[name], outputs[int8_spec.name]), 4),
        agreement_metric=metric, **confident,
    )


def _softmax_max(logits: np.ndarray) -> float:
    z = np.exp(logits - logits.max())
    return float(z.max() / z.sum())


def bench(
    names: Sequence[str] = (),
    *,
    providers: Sequence[str] = (),
    intra_op_threads: int = 2,
    runs: int = 3,
    manifest: Path = MANIFEST,
) -> list[PairResult]:
    """Every named fp32 model (default: all that have int8 variants) against its int8,
    as the registry at ``manifest`` names them."""
    return [bench_pair(n, providers=providers, intra_op_threads=intra_op_threads, runs=runs,
                       manifest=manifest)
            for n in (names or benchable(manifest=manifest))]


def format_table(results: Sequence[PairResult]) -> str:
    header = ("model", "provider", "fp32 ms (p95)", "int8 ms (p95)", "int8/fp32",
              "fp32 MB", "int8 MB", "agreement")
    rows = [header]
    for r in results:
        rows.append((
            r.model, r.int8.provider.removesuffix("ExecutionProvider"),
            f"{r.fp32.latency_median_ms:.2f} ({r.fp32.latency_p95_ms:.2f})",
            f"{r.int8.latency_median_ms:.2f} ({r.int8.latency_p95_ms:.2f})",
            f"{r.speed_ratio:.2f}x",
            f"{r.fp32.size_bytes / 1e6:.1f}", f"{r.int8.size_bytes / 1e6:.1f}",
            f"{r.agreement:.0%} ({r.agreement_metric}, {r.frames} inputs)",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
