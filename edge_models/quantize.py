"""int8 static QDQ quantization with real calibration frames.

``quantize(name)`` takes a registered fp32 model, runs ONNX Runtime's
``quant_pre_process`` (ONNX shape inference and graph optimization; symbolic
shape inference is skipped so that the result does not depend on whether sympy
is installed), then ``quantize_static`` in the QDQ format: activations uint8,
weights int8 per channel, MinMax calibration. Activations in uint8 with int8
weights is the pairing that ONNX Runtime's x86 kernels run fastest; per-tensor
weights cost EfficientNet-Lite0 its accuracy (top-1 agreement 53%).

Calibration frames are real: photos from scikit-image and matplotlib (whole,
mirrored and cropped) for recognition; rendered signs over those photos, and
the text lines the fp32 detector finds in them, for OCR. Dynamic quantization
is not offered: it made these CNNs slower on CPU (MODELS.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_models.errors import BadInputError
from edge_models.registry import MANIFEST, check, get_spec, quantized_variants, resolve_path
from edge_models.sessions import sha256_file

__all__ = ["QuantizeResult", "calibration_frames", "quantize"]

CALIBRATION_SEED = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizeResult:
    name: str
    output: Path
    frames: int
    size_bytes: int
    sha256: str
    fp32_size_bytes: int


def _recognition_frames(count: int) -> Iterator[dict[str, np.ndarray]]:
    from edge_models.photos import CALIBRATION_PHOTOS, photo
    from edge_models.recognition import preprocess_imagenet

    rng = np.random.default_rng(CALIBRATION_SEED)
    made = 0
    for name in CALIBRATION_PHOTOS:
        image = photo(name)
        h, w = image.shape[:2]
        views = [image, np.ascontiguousarray(image[:, ::-1])]
        for _ in range(2):
            s = rng.uniform(0.5, 0.9)
            ch, cw = int(h * s), int(w * s)
            y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            views.append(np.ascontiguousarray(image[y:y + ch, x:x + cw]))
        for view in views:
            if made >= count:
                return
            made += 1
            yield {"input": preprocess_imagenet(view)}


def _sign_images(count: int) -> list[np.ndarray]:
    from edge_models.photos import photo
    from edge_models.signs import sign_set

    images = [s.image_bgr for s in sign_set(max(1, count - 2), seed=100)]
    return images + [photo("page"), photo("text")]


def _det_frames(count: int) -> Iterator[dict[str, np.ndarray]]:
    from edge_models.ocr import det_preprocess

    for image in _sign_images(count)[:count]:
        x = det_preprocess(image)
        if x is not None:
            yield {"x": x}


def _text_crops(count: int) -> list[np.ndarray]:
    from edge_models.ocr import TextReader, crop_quad

    reader = TextReader()
    crops: list[np.ndarray] = []
    for image in _sign_images(count):
        crops.extend(crop_quad(image, q.copy()) for q in reader.detect(image))
        if len(crops) >= count:
            break
    return reader.orient(crops[:count])


def _rec_frames(count: int) -> Iterator[dict[str, np.ndarray]]:
    from edge_models.ocr import REC_SHAPE, rec_preprocess

    _, height, width = REC_SHAPE
    for crop in _text_crops(count):
        ratio = max(width / height, crop.shape[1] / crop.shape[0])
        yield {"x": rec_preprocess(crop, ratio)[None]}


def _cls_frames(count: int) -> Iterator[dict[str, np.ndarray]]:
    from edge_models.ocr import cls_preprocess

    crops = _text_crops(max(1, count // 2))
    for crop in crops + [np.ascontiguousarray(c[::-1, ::-1]) for c in crops]:
        yield {"x": cls_preprocess(crop)[None]}


_FRAMES: dict[str, Callable[[int], Iterator[dict[str, np.ndarray]]]] = {
    "image-classification": _recognition_frames,
    "ocr-detection": _det_frames,
    "ocr-recognition": _rec_frames,
    "ocr-orientation": _cls_frames,
}
DEFAULT_FRAMES = {
    "image-classification": 88,
    "ocr-detection": 14,
    "ocr-recognition": 40,
    "ocr-orientation": 40,
}


def calibration_frames(task: str, count: int | None = None) -> list[dict[str, np.ndarray]]:
    """The calibration inputs for a model of ``task`` (the same ones on every run)."""
    if task not in _FRAMES:
        raise BadInputError(f"no calibration data for {task!r} models "
                            f"(quantizable: {', '.join(_FRAMES)})")
    return list(_FRAMES[task](count or DEFAULT_FRAMES[task]))


def _opset13(source: Path, tmp: Path) -> Path:
    """Per-channel QDQ needs opset 13 (DequantizeLinear's axis); PP-OCR files are opset 11."""
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source))
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if opset >= 13:
        return source
    converted = tmp / "opset13.onnx"
    onnx.save(version_converter.convert_version(model, 13), str(converted))
    return converted


def quantize(
    name: str,
    *,
    output: Path | None = None,
    frames: int | None = None,
    progress: bool = True,
    manifest: Path = MANIFEST,
) -> QuantizeResult:
    """Quantize the registered fp32 model ``name`` to int8 static QDQ; write ``output``.

    ``output`` defaults to the file of the registered int8 variant of ``name``
    (so the shipped file is rebuilt in place), else ``NAME_int8.onnx`` here. The
    models are looked up in the registry at ``manifest``.
    """
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from tqdm import tqdm

    spec = get_spec(name, manifest=manifest)
    if spec.quantized_from:
        raise BadInputError(f"model {name!r} is already int8 (quantized from "
                            f"{spec.quantized_from!r}); quantize that one")
    source = check(spec)
    inputs = calibration_frames(spec.task, frames)
    if not inputs:
        raise BadInputError(f"no calibration frames could be made for {name!r}")
    registered = quantized_variants(name, manifest=manifest)
    target = output or (resolve_path(registered[0]) if registered else Path(f"{name}_int8.onnx"))

    class Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self) -> None:
            self.bar: Any = tqdm(total=len(inputs), desc=f"calibrating {name}", unit="frame",
                                 disable=not progress)
            self.items = iter(inputs)

        def get_next(self) -> dict[str, np.ndarray] | None:
            item = next(self.items, None)
            if item is None:
                self.bar.close()
            else:
                self.bar.update(1)
            return item

    with tempfile.TemporaryDirectory(prefix="glasses-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(_opset13(source, Path(tmp))), str(prepared),
                          skip_symbolic_shape=True)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(quantized), Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=True,
            calibrate_method=CalibrationMethod.MinMax,
        )
        model = onnx.load(str(quantized))
        original = onnx.load(str(source), load_external_data=False)
        # Keep the fp32 file's metadata (the recognizer's character list lives there).
        known = {p.key for p in model.metadata_props}
        for prop in original.metadata_props:
            if prop.key not in known:
                model.metadata_props.add(key=prop.key, value=prop.value)
        model.metadata_props.add(key="quantized_from",
                                 value=f"{name} sha256 {spec.sha256}")
        model.metadata_props.add(
            key="quantization",
            value=f"static QDQ, U8 activations, S8 per-channel weights, MinMax, "
                  f"{len(inputs)} calibration frames",
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(target))
    return QuantizeResult(
        name=name, output=target, frames=len(inputs), size_bytes=target.stat().st_size,
        sha256=sha256_file(target), fp32_size_bytes=source.stat().st_size,
    )
