"""What several benchmarks share: the CPU's features (printed beside every figure) and a
percentile that needs no numpy. Imported as ``_common`` (a benchmark runs as a script,
so its own folder is on ``sys.path``)."""

from __future__ import annotations

__all__ = ["cpu_flags", "percentile"]

_WANTED = {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "amx_bf16",
           "asimd", "asimddp", "sve"}


def cpu_flags() -> list[str]:
    """The vector and matrix features of this CPU that matter to the figures (sorted)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return sorted(_WANTED & set(line.split(":", 1)[1].split()))
    except OSError:
        pass
    return []


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``: the nearest rank above; 0 when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0
