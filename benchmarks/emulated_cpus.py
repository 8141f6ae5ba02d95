"""int8 against fp32 on CPUs we do not have: x86-64 without VNNI and ARM64, under QEMU user mode.

    .venv/bin/python benchmarks/emulated_cpus.py [--cpus haswell,epyc-milan,nehalem]
        [--models PATH...] [--selfcheck] [--arm64-root DIR --arm64-site DIR]

Prints one JSON object. For each emulated CPU: what CPUID (x86) or the kernel's
HWCAP bits (ARM64) report inside the emulator (``edge_models.cpu``), and, for
each int8 model file, its top-1 agreement with fp32 on the 60-frame recognition
bench set (``glasses-models bench``'s frames) and the mean logit cosine. The
baseline is fp32 in the same run: computed natively (its top-1 does not depend
on the CPU; ``--fp32-frames N`` recomputes it for N frames inside the emulator
and reports the largest logit difference), and the same int8 files natively
(this machine's kernels) as a second row. With ``--selfcheck`` the runtime's
own self-check (``edge_models.variants.choose_variant``) also runs inside the
emulator, with an empty cache, and its decision is reported.

Timing under emulation means nothing; only agreement is reported. Needs
``apt-get install qemu-user`` (QEMU 7.2's TCG emulates AVX2 and FMA, not
AVX-512 or VNNI, so the x86 classes it can show are ``avx2`` and ``sse``).
ARM64 needs an arm64 Python with numpy and onnxruntime: see BENCHMARKS.md
("Seeing: models fp32 vs int8") for the few commands that unpack them. This
script is how portability is shown; the test suite does not need it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# name -> (qemu binary, -cpu model, what it stands for)
CPUS = {
    "haswell": ("qemu-x86_64", "Haswell", "Intel AVX2 + FMA, no AVX-512, no VNNI"),
    "epyc-milan": ("qemu-x86_64", "EPYC-Milan", "AMD Zen 3 (the reported CPU): AVX2, no VNNI"),
    "nehalem": ("qemu-x86_64", "Nehalem", "SSE4.2 only"),
    "arm64-max": ("qemu-aarch64", "max", "ARMv8+ with NEON, dotprod, i8mm, SVE"),
    "arm64-a76": ("qemu-aarch64", "cortex-a76", "NEON + dotprod, no i8mm (Cortex-A76)"),
    "arm64-a53": ("qemu-aarch64", "cortex-a53", "NEON only, no dotprod (Cortex-A53)"),
}
DEFAULT_MODELS = ("edge_models/data/efficientnet_lite0_int8.onnx",)
# qemu-aarch64 (7.2) passes the host's x86 /proc/cpuinfo through, and onnxruntime's cpuinfo
# library crashes parsing it: the worker runs in a private mount namespace (unshare, as
# root) where an ARM /proc/cpuinfo is bind-mounted. The int8 kernels' features come from
# the HWCAP bits, which QEMU sets for the CPU model; this file only has to parse.
_ARM_CPUINFO = {
    "max": ("0xd0c", "fp asimd asimdhp asimddp i8mm sve"),
    "cortex-a76": ("0xd0b", "fp asimd asimdhp asimddp"),
    "cortex-a53": ("0xd03", "fp asimd"),
}
FP32 = "edge_models/data/efficientnet_lite0_fp32.onnx"


def _session(path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # emulated threads spin: one is faster
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _logits(path: str, frames: np.ndarray) -> np.ndarray:
    session = _session(path)
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: frames[i:i + 1]})[0]
                           for i in range(len(frames))])


def _compare(ref: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    cos = np.sum(ref * got, 1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(got, axis=1)
    same = ref.argmax(1) == got.argmax(1)
    return {"top1_agreement": round(float(same.mean()), 4), "agreeing_frames": int(same.sum()),
            "frames": len(ref), "logit_cosine_mean": round(float(cos.mean()), 4),
            "logit_cosine_min": round(float(cos.min()), 4)}


def worker(args: argparse.Namespace) -> int:
    """Runs inside the emulator: CPU features, int8 logits, optionally fp32 and the self-check."""
    import onnxruntime

    from edge_models.cpu import cpu_features

    data = np.load(args.worker)
    frames, ref = data["frames"], data["fp32"]
    out: dict[str, Any] = {"cpu": cpu_features().as_dict(),
                           "onnxruntime": onnxruntime.__version__, "models": {}}
    for model in args.models:
        start = time.perf_counter()
        out["models"][model] = {**_compare(ref, _logits(str(ROOT / model), frames)),
                                "emulated_seconds": round(time.perf_counter() - start, 1)}
    if args.fp32_frames:
        n = args.fp32_frames
        fp32 = _logits(str(ROOT / FP32), frames[:n])
        out["fp32_check"] = {"frames": n,
                             "top1_same_as_native": bool((fp32.argmax(1)
                                                          == ref[:n].argmax(1)).all()),
                             "max_abs_logit_diff": float(np.abs(fp32 - ref[:n]).max())}
    try:
        import cv2  # noqa: F401  (the self-check decodes its bundled JPEG frames)
    except ImportError:
        if args.selfcheck:
            out["selfcheck"] = {"skipped": "no OpenCV in this Python"}
        args.selfcheck = False
    if args.selfcheck:
        from edge_models.variants import choose_variant

        with tempfile.TemporaryDirectory() as cache:
            from edge_models.registry import MANIFEST

            manifest = _manifest_for(Path(args.selfcheck_int8), Path(cache)) \
                if args.selfcheck_int8 else MANIFEST
            start = time.perf_counter()
            choice = choose_variant("efficientnet_lite0", cache_dir=Path(cache),
                                    intra_op_threads=1, manifest=manifest)
            out["selfcheck"] = {**choice.as_dict(),
                                "emulated_seconds": round(time.perf_counter() - start, 1)}
    print(json.dumps(out))
    return 0


def _manifest_for(int8: Path, folder: Path) -> Path:
    """The shipped registry with efficientnet_lite0_int8 pointing at another int8 file."""
    from edge_models.registry import MANIFEST
    from edge_models.sessions import sha256_file

    out, inside = [], False
    for line in MANIFEST.read_text().splitlines():
        if line.startswith("[models."):
            inside = line == "[models.efficientnet_lite0_int8]"
        key = line.split("=", 1)[0].strip()
        if inside and key == "resource":
            line = f'resource = "file:{int8.resolve()}"'
        elif inside and key == "sha256":
            line = f'sha256 = "{sha256_file(int8)}"'
        elif inside and key == "size_bytes":
            line = f"size_bytes = {int8.stat().st_size}"
        out.append(line)
    path = folder / "manifest.toml"
    path.write_text("\n".join(out) + "\n")
    return path


def _inputs(path: Path) -> None:
    from edge_models.bench import _recognition_inputs

    frames = np.concatenate(_recognition_inputs())
    np.savez(path, frames=frames, fp32=_logits(str(ROOT / FP32), frames))


def _command(cpu: str, args: argparse.Namespace, inputs: Path) -> list[str] | None:
    binary, model, _ = CPUS[cpu]
    if shutil.which(binary) is None:
        return None
    script = [str(Path(__file__).resolve()), "--worker", str(inputs),
              "--models", *args.models, "--fp32-frames", str(args.fp32_frames)]
    if args.selfcheck:
        script.append("--selfcheck")
    if args.selfcheck_int8:
        script += ["--selfcheck-int8", str(Path(args.selfcheck_int8).resolve())]
    if binary == "qemu-aarch64":
        if not args.arm64_root or shutil.which("unshare") is None:
            return None
        part, features = _ARM_CPUINFO[model]
        cpuinfo = inputs.with_name(f"cpuinfo-{model}")
        cpuinfo.write_text("".join(
            f"processor\t: {i}\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
            f"CPU architecture: 8\nCPU variant\t: 0x1\nCPU part\t: {part}\n"
            "CPU revision\t: 1\n\n" for i in range(2)))
        python = str(Path(args.arm64_root) / "usr/bin/python3.11")
        return ["unshare", "--mount", "sh", "-c", f"mount --bind {cpuinfo} /proc/cpuinfo && "
                'exec "$@"', "sh", binary, "-L", args.arm64_root, "-cpu", model, python,
                *script]
    return [binary, "-cpu", model, sys.executable, *script]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--cpus", default="haswell,epyc-milan",
                        help=f"comma-separated, of {', '.join(CPUS)}")
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                        help="int8 files, relative to the repository")
    parser.add_argument("--fp32-frames", type=int, default=0,
                        help="also run fp32 on this many frames inside the emulator (slow)")
    parser.add_argument("--selfcheck", action="store_true",
                        help="run the runtime self-check inside the emulator too")
    parser.add_argument("--selfcheck-int8", default="", metavar="PATH",
                        help="run the self-check against this int8 file instead of the shipped one")
    parser.add_argument("--arm64-root", default="", help="an arm64 root with usr/bin/python3.11")
    parser.add_argument("--arm64-site", default="",
                        help="arm64 site-packages with numpy and onnxruntime")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    unknown = [c for c in args.cpus.split(",") if c not in CPUS]
    if unknown:
        print(f"emulated_cpus: unknown CPU {', '.join(unknown)} (known: {', '.join(CPUS)})",
              file=sys.stderr)
        return 2
    from edge_models.cpu import cpu_features

    report: dict[str, Any] = {"benchmark": "int8_agreement_on_emulated_cpus",
                              "host_cpu": cpu_features().as_dict(), "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs.npz"
        _inputs(inputs)
        data = np.load(inputs)
        report["runs"]["native"] = {
            "cpu": cpu_features().as_dict(),
            "models": {m: _compare(data["fp32"], _logits(str(ROOT / m), data["frames"]))
                       for m in args.models}}
        for cpu in args.cpus.split(","):
            command = _command(cpu, args, inputs)
            if command is None:
                report["runs"][cpu] = {"skipped": f"{CPUS[cpu][0]} or the arm64 root missing"}
                continue
            arm = CPUS[cpu][0] == "qemu-aarch64"
            env = dict(os.environ, PYTHONPATH=os.pathsep.join(
                p for p in (args.arm64_site if arm else "", str(ROOT)) if p))
            start = time.perf_counter()
            proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
            if proc.returncode != 0:
                report["runs"][cpu] = {"failed": proc.stderr.strip().splitlines()[-1:]}
                continue
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            run["qemu"] = {"binary": CPUS[cpu][0], "cpu_model": CPUS[cpu][1],
                           "stands_for": CPUS[cpu][2],
                           "seconds": round(time.perf_counter() - start, 1)}
            report["runs"][cpu] = run
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
