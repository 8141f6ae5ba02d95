"""Models, fp32 against int8 (the baseline is the fp32 model, measured in the same run).

    .venv/bin/python benchmarks/bench_models.py [--runs 5] [--providers cpu] [NAME...]

Prints one JSON object: the CPU's features as the int8 kernels see them
(``edge_models.cpu``); for each model with an int8 variant, latency median and
p95 of both (interleaved frame by frame), file sizes, the int8/fp32 time ratio
and how often their outputs agree (see edge_models/bench.py); and the runtime
self-check's decision for each model it applies to (``edge_models.variants``,
run afresh with a private cache: which variant this machine would load, and
why). It is the same code as ``glasses-models bench``. Goal for recognition:
int8 at most 0.67x the fp32 time with top-1 agreement of at least 90%. For
other CPU classes (no VNNI, ARM64) see benchmarks/emulated_cpus.py.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from edge_models.bench import bench
from edge_models.cpu import cpu_features
from edge_models.sessions import available_providers
from edge_models.variants import choose_variant

RECOGNITION_GOAL = {"max_speed_ratio": 0.67, "min_top1_agreement": 0.9}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("names", nargs="*")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--providers", default="")
    args = parser.parse_args(argv)
    providers = tuple(p for p in args.providers.split(",") if p)
    results = bench(args.names, providers=providers, intra_op_threads=args.threads,
                    runs=args.runs)
    with tempfile.TemporaryDirectory() as cache:
        choices = [choose_variant(family, providers=providers, intra_op_threads=args.threads,
                                  cache_dir=Path(cache)).as_dict()
                   for family in ("efficientnet_lite0", "ppocr_det")
                   if not args.names or f"{family}_fp32" in args.names or family in args.names]
    report: dict[str, object] = {
        "benchmark": "models_fp32_vs_int8",
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or
                    platform.machine(), "available_providers": available_providers()},
        "cpu": cpu_features().as_dict(),
        "selfcheck": choices,
        "intra_op_threads": args.threads,
        "runs": args.runs,
        "models": {r.model: r.as_dict() for r in results},
    }
    recognition = next((r for r in results if r.task == "image-classification"), None)
    if recognition is not None:
        report["recognition_goal"] = {
            **RECOGNITION_GOAL,
            "speed_ratio": recognition.speed_ratio,
            "top1_agreement": recognition.agreement,
            "top1_agreement_confident": recognition.agreement_confident,
            "met": recognition.speed_ratio <= RECOGNITION_GOAL["max_speed_ratio"]
            and recognition.agreement >= RECOGNITION_GOAL["min_top1_agreement"],
        }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
