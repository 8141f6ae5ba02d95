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

__all__ = ["CALIBRATIONS", "RECIPES", "QuantizeResult", "Recipe", "calibration_frames", "quantize"]

CALIBRATION_SEED = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizeResult:
    name: str
    output: Path
    frames: int
    size_bytes: int
    sha256: str
    fp32_size_bytes: int
    recipe: str = ""


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


@dataclass(frozen=True, slots=True, kw_only=True)
class Recipe:
    """How a model is quantized: the knobs that decide whether int8 holds on every CPU.

    ``activation_bits=7`` keeps uint8 activations within [0, 127] (the scale is
    doubled after calibration), so that a u8 x s8 pair sums to at most
    2 x 127 x 128 = 32512 and cannot saturate the 16-bit lanes of x86's
    ``vpmaddubsw`` (AVX2 / AVX-512 without VNNI). ``weight_bits=7`` is
    onnxruntime's ``reduce_range`` (weights in [-64, 64]), the other way to the
    same bound. ``keep_float`` names nodes left in fp32 (no QDQ around them).
    """

    calibration: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    weight_bits: int = 8
    activation_bits: int = 8
    keep_float: tuple[str, ...] = ()
    # With weight_bits=7: nodes whose weights keep all 8 bits ("depthwise" = every
    # depthwise convolution, else node names).
    full_range_weights: tuple[str, ...] = ()
    bias_correction: bool = False
    frames: int | None = None

    def describe(self) -> str:
        calibration = {"minmax": "MinMax", "entropy": "Entropy",
                       "percentile": f"Percentile {self.percentile:g}"}[self.calibration]
        parts = [
            "static QDQ",
            f"U8 activations{' in 7 bits [0,127]' if self.activation_bits == 7 else ''}",
            f"S8 {'per-channel' if self.per_channel else 'per-tensor'} weights"
            f"{' in 7 bits (reduce_range)' if self.weight_bits == 7 else ''}",
            calibration,
        ]
        if self.weight_bits == 7 and self.full_range_weights:
            parts.append(f"8-bit weights in {', '.join(self.full_range_weights)}")
        if self.bias_correction:
            parts.append("bias correction")
        if self.keep_float:
            parts.append(f"fp32 nodes: {', '.join(self.keep_float)}")
        return ", ".join(parts)


CALIBRATIONS = ("minmax", "percentile", "entropy")
# The recipe `glasses-models quantize NAME` uses for each task (see docs/models.md for the
# variants measured; the shipped files are built with these).
#
# EfficientNet-Lite0: 7-bit weights in the convolutions that run as u8 x s8 GEMMs (their
# pairs cannot saturate x86's 16-bit lanes without VNNI), 8-bit weights in the depthwise
# convolutions (whose kernels do not sum pairs: the same on AVX2 and VNNI, measured), the
# two layers most hurt by quantization left in fp32 (the 3x3 stem and block 0's depthwise
# convolution: a sensitivity scan), and bias correction (which takes most of the error the
# 7-bit weights bring). Top-1 agreement with fp32: 95% (57/60) on VNNI/AMX and on AVX2
# alike (the logits are identical), where the old 8-bit recipe gave 90% and 63%.
RECIPES: dict[str, Recipe] = {
    "image-classification": Recipe(
        weight_bits=7, full_range_weights=("depthwise",), bias_correction=True,
        keep_float=("/_stem/conv/Conv", "/_blocks.0/_depthwise/conv/Conv"),
    ),
    # PP-OCR's detector: the same (7-bit weights but in the depthwise convolutions, bias
    # correction). The 8-bit file dropped a text box on 1 of 8 signs on AVX2 without VNNI
    # (QEMU Haswell); this one's maps there are bit-identical to AMX's.
    "ocr-detection": Recipe(weight_bits=7, full_range_weights=("depthwise",),
                            bias_correction=True),
    "ocr-recognition": Recipe(),
    "ocr-orientation": Recipe(),
}


def _check_recipe(recipe: Recipe) -> None:
    if recipe.calibration not in CALIBRATIONS:
        raise BadInputError(f"calibration {recipe.calibration!r} is not one of "
                            f"{', '.join(CALIBRATIONS)}")
    if recipe.weight_bits not in (7, 8) or recipe.activation_bits not in (7, 8):
        raise BadInputError("weight and activation bits must be 7 or 8, got "
                            f"{recipe.weight_bits} and {recipe.activation_bits}")
    if not 50.0 < recipe.percentile <= 100.0:
        raise BadInputError(f"percentile must be in (50, 100], got {recipe.percentile}")


def _seven_bit_activations(model: Any) -> int:
    """Rescale every uint8 activation's QDQ pair from [0, 255] to [0, 127]; return how many.

    The real range a tensor covers stays the same (scale x 255/127, zero point x 127/255):
    one bit of activation resolution is traded for kernels that cannot saturate.
    """
    from onnx import TensorProto, numpy_helper

    initializers = {t.name: t for t in model.graph.initializer}
    done = 0
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers:
            continue
        zp_name = node.input[2] if len(node.input) > 2 else ""
        zp_init = initializers.get(zp_name)
        scale_init = initializers.get(node.input[1])
        if zp_init is None or scale_init is None or zp_init.data_type != TensorProto.UINT8:
            continue
        scale = numpy_helper.to_array(scale_init).astype(np.float32)
        zero = numpy_helper.to_array(zp_init).astype(np.float64)
        new_scale = (scale * np.float32(255.0 / 127.0)).astype(np.float32)
        new_zero = np.clip(np.round(zero * 127.0 / 255.0), 0, 127).astype(np.uint8)
        scale_init.CopyFrom(numpy_helper.from_array(new_scale, scale_init.name))
        zp_init.CopyFrom(numpy_helper.from_array(new_zero.reshape(zero.shape), zp_init.name))
        done += 1
    return done


def _full_range_overrides(model: Any, selectors: tuple[str, ...]) -> dict[str, Any]:
    """TensorQuantOverrides giving the selected nodes' weights all 8 bits (no reduce_range)."""
    shapes = {t.name: list(t.dims) for t in model.graph.initializer}
    overrides: dict[str, Any] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in shapes:
            continue
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        depthwise = group > 1 and shapes[node.input[1]][1] == 1
        if node.name in selectors or (depthwise and "depthwise" in selectors):
            overrides[node.input[1]] = [{"axis": 0, "reduce_range": False}]
    return overrides


def _outputs(model: Any, names: list[str], frames: list[dict[str, np.ndarray]],
             *, optimize: bool) -> list[np.ndarray]:
    """Per-channel means (over frames, and height and width) of the tensors ``names``."""
    import onnx
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    known = {o.name for o in m.graph.output}
    for n in names:
        if n not in known:
            m.graph.output.append(onnx.helper.make_empty_tensor_value_info(n))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_BASIC if optimize
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    session = ort.InferenceSession(m.SerializeToString(), options,
                                   providers=["CPUExecutionProvider"])
    sums: list[np.ndarray] = []
    for frame in frames:
        outs = session.run(names, frame)
        means = [o.reshape(o.shape[0], o.shape[1], -1).mean(axis=(0, 2)) if o.ndim > 2
                 else o.mean(axis=0) for o in outs]
        sums = means if not sums else [a + b for a, b in zip(sums, means, strict=True)]
    return [x / len(frames) for x in sums]


def _correct_biases(model: Any, prepared: Any, frames: list[dict[str, np.ndarray]]) -> int:
    """Empirical bias correction (Nagel et al. 2019, "Data-Free Quantization", section 4.2).

    Quantizing weights and inputs shifts the mean of a convolution's output per channel;
    the shift adds up through depthwise-separable blocks. Layer by layer, in graph order,
    the int32 bias of each quantized Conv/Gemm is moved by the mean difference between
    the quantized model's output (layers before it already corrected) and the fp32 model's,
    measured on the calibration frames. Returns how many biases were corrected.
    """
    from onnx import numpy_helper

    init = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    fp32_nodes = {n.name: n for n in prepared.graph.node}
    targets = []
    for node in model.graph.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        dq = producers.get(node.input[2])
        ref = fp32_nodes.get(node.name)
        if dq is None or dq.op_type != "DequantizeLinear" or dq.input[0] not in init or ref is None:
            continue
        targets.append((node, dq, ref.output[0]))
    if not targets:
        return 0
    reference = _outputs(prepared, [ref for _, _, ref in targets], frames, optimize=True)
    for (node, dq, _), want in zip(targets, reference, strict=True):
        (got,) = _outputs(model, [node.output[0]], frames, optimize=False)
        bias = init[dq.input[0]]
        scale = numpy_helper.to_array(init[dq.input[1]]).astype(np.float64)
        values = numpy_helper.to_array(bias).astype(np.int64)
        shift = np.round((got - want) / scale).astype(np.int64)
        corrected = np.clip(values - shift, -(2**31), 2**31 - 1).astype(np.int32)
        bias.CopyFrom(numpy_helper.from_array(corrected, bias.name))
    return len(targets)


def quantize(
    name: str,
    *,
    output: Path | None = None,
    frames: int | None = None,
    progress: bool = True,
    manifest: Path = MANIFEST,
    recipe: Recipe | None = None,
) -> QuantizeResult:
    """Quantize the registered fp32 model ``name`` to int8 static QDQ; write ``output``.

    ``output`` defaults to the file of the registered int8 variant of ``name``
    (so the shipped file is rebuilt in place), else ``NAME_int8.onnx`` here. The
    models are looked up in the registry at ``manifest``. ``recipe`` defaults to
    the task's entry in ``RECIPES``.
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
    recipe = recipe or RECIPES.get(spec.task, Recipe())
    _check_recipe(recipe)
    source = check(spec)
    inputs = calibration_frames(spec.task, frames or recipe.frames)
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

    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[recipe.calibration]
    extra: dict[str, Any] = {}
    if recipe.calibration == "percentile":
        extra["CalibPercentile"] = recipe.percentile
    with tempfile.TemporaryDirectory(prefix="glasses-quantize-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(_opset13(source, Path(tmp))), str(prepared),
                          skip_symbolic_shape=True)
        prepared_nodes = {n.name for n in onnx.load(str(prepared)).graph.node}
        unknown = [n for n in recipe.keep_float if n not in prepared_nodes]
        if unknown:
            raise BadInputError(f"no node named {', '.join(unknown)} in {name!r} "
                                "(names as after quant_pre_process, e.g. /_stem/conv/Conv)")
        if recipe.weight_bits == 7 and recipe.full_range_weights:
            extra["TensorQuantOverrides"] = _full_range_overrides(
                onnx.load(str(prepared)), recipe.full_range_weights)
        quantized = Path(tmp) / "int8.onnx"
        quantize_static(
            str(prepared), str(quantized), Reader(),
            quant_format=QuantFormat.QDQ,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            per_channel=recipe.per_channel,
            reduce_range=recipe.weight_bits == 7,
            calibrate_method=method,
            nodes_to_exclude=list(recipe.keep_float),
            extra_options=extra,
        )
        model = onnx.load(str(quantized))
        if recipe.activation_bits == 7:
            _seven_bit_activations(model)
        if recipe.bias_correction:
            _correct_biases(model, onnx.load(str(prepared)), inputs)
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
            value=f"{recipe.describe()}, {len(inputs)} calibration frames",
        )
        target.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(target))
    return QuantizeResult(
        name=name, output=target, frames=len(inputs), size_bytes=target.stat().st_size,
        sha256=sha256_file(target), fp32_size_bytes=source.stat().st_size,
        recipe=recipe.describe(),
    )
