"""What this CPU offers the int8 kernels of ONNX Runtime, and which kernel class it gets.

ONNX Runtime's MLAS picks its int8 (QGEMM / quantized convolution) kernels by
instruction set, and they do not all compute the same thing:

- x86-64 with VNNI (AVX-512 VNNI, AVX-VNNI) or AMX: ``vpdpbusd`` / AMX tiles sum
  u8 x s8 products straight into 32 bits: exact.
- x86-64 with AVX2 or AVX-512BW but no VNNI: ``vpmaddubsw`` adds two u8 x s8
  products into a *saturating* 16-bit lane before widening; a pair above 32767
  (e.g. 255 x 127 + 255 x 127) is clipped. Results then differ from VNNI's.
- ARM64: NEON widening multiplies, ``sdot``/``udot`` (dotprod) or
  ``smmla``/``ummla`` (i8mm): 32-bit accumulation, no 16-bit saturation step.

``cpu_features()`` reads the features the way the kernels' own dispatch does:
on x86-64 by executing CPUID and XGETBV (so an emulator's CPU model is seen,
not the host's ``/proc/cpuinfo``), on ARM64 Linux from the kernel's hardware
capability bits (``getauxval``); ``/proc/cpuinfo`` is the fallback on Linux, and
elsewhere only the architecture is known.
"""

from __future__ import annotations

import ctypes
import mmap
import platform
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = [
    "ARM64_FEATURES",
    "X86_FEATURES",
    "CpuFeatures",
    "cpu_features",
    "features_from_flags",
]

# The features reported (others are ignored): the ones the int8 kernels dispatch on.
X86_FEATURES = ("sse4_1", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8")
ARM64_FEATURES = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")

# /proc/cpuinfo spells a few of them differently.
_CPUINFO_ALIASES = {"avx512vnni": "avx512_vnni", "avxvnni": "avx_vnni", "neon": "asimd",
                    "dotprod": "asimddp", "svei8mm": "i8mm"}


@dataclass(frozen=True, slots=True, kw_only=True)
class CpuFeatures:
    """The CPU as the int8 kernels see it.

    ``isa_class`` names the kernel family ONNX Runtime's MLAS dispatches to for
    u8 x s8 products (``amx``, ``avx512_vnni``, ``avx_vnni``, ``avx512_novnni``,
    ``avx2``, ``sse``, ``arm64_i8mm``, ``arm64_dotprod``, ``arm64_neon``, or the
    bare machine name when unknown). ``int16_saturation`` is true where those
    kernels sum pairs of products in saturating 16-bit lanes (x86 without VNNI).
    ``source`` says where the features were read (``cpuid``, ``hwcap``,
    ``/proc/cpuinfo``, ``none``).
    """

    machine: str
    features: tuple[str, ...]
    isa_class: str
    int16_saturation: bool
    source: str
    model_name: str = ""

    def has(self, feature: str) -> bool:
        return feature in self.features

    def key(self) -> str:
        """A short stable string for cache keys: machine, class and features."""
        return f"{self.machine}/{self.isa_class}/{'+'.join(self.features)}"

    def as_dict(self) -> dict[str, object]:
        return {"machine": self.machine, "isa_class": self.isa_class,
                "features": list(self.features), "int16_saturation": self.int16_saturation,
                "source": self.source, "model_name": self.model_name}


def _machine() -> str:
    m = platform.machine().lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def _x86_class(f: set[str]) -> tuple[str, bool]:
    if {"amx_tile", "amx_int8"} <= f and sys.platform.startswith("linux"):
        return "amx", False
    if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= f:
        return "avx512_vnni", False
    if {"avx2", "avx_vnni"} <= f:
        return "avx_vnni", False
    if {"avx512f", "avx512bw"} <= f:
        return "avx512_novnni", True
    if "avx2" in f:
        return "avx2", True
    return "sse", "sse4_1" in f


def _arm_class(f: set[str]) -> str:
    if "i8mm" in f:
        return "arm64_i8mm"
    if "asimddp" in f:
        return "arm64_dotprod"
    return "arm64_neon"


def features_from_flags(machine: str, flags: set[str], *, source: str,
                        model_name: str = "") -> CpuFeatures:
    """``CpuFeatures`` from a set of feature names (``/proc/cpuinfo`` spellings accepted)."""
    names = {_CPUINFO_ALIASES.get(x, x) for x in flags}
    if machine == "x86_64":
        found = tuple(x for x in X86_FEATURES if x in names)
        isa, saturation = _x86_class(set(found))
    elif machine == "aarch64":
        found = tuple(x for x in ARM64_FEATURES if x in names)
        isa, saturation = _arm_class(set(found)), False
    else:
        found, isa, saturation = (), machine or "unknown", False
    return CpuFeatures(machine=machine, features=found, isa_class=isa,
                       int16_saturation=saturation, source=source, model_name=model_name)


# -- x86-64: CPUID and XGETBV, executed from a small page of machine code ------------------
# void cpuid(uint32 leaf, uint32 subleaf, uint32 out[4])  (System V AMD64 calling convention)
_CPUID_CODE = bytes([
    0x53,                    # push rbx
    0x49, 0x89, 0xD0,        # mov r8, rdx
    0x89, 0xF8,              # mov eax, edi
    0x89, 0xF1,              # mov ecx, esi
    0x0F, 0xA2,              # cpuid
    0x41, 0x89, 0x00,        # mov [r8], eax
    0x41, 0x89, 0x58, 0x04,  # mov [r8+4], ebx
    0x41, 0x89, 0x48, 0x08,  # mov [r8+8], ecx
    0x41, 0x89, 0x50, 0x0C,  # mov [r8+12], edx
    0x5B,                    # pop rbx
    0xC3,                    # ret
])
# uint64 xgetbv(uint32 index)
_XGETBV_CODE = bytes([
    0x89, 0xF9,              # mov ecx, edi
    0x0F, 0x01, 0xD0,        # xgetbv
    0x48, 0xC1, 0xE2, 0x20,  # shl rdx, 32
    0x48, 0x09, 0xD0,        # or rax, rdx
    0xC3,                    # ret
])


def _bit(value: int, bit: int) -> bool:
    return bool(value >> bit & 1)


def _x86_cpuid_flags() -> set[str]:
    """Features from CPUID/XGETBV, as MLAS checks them (OS support of AVX/AVX-512/AMX state)."""
    page = mmap.mmap(-1, mmap.PAGESIZE, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    try:
        page.write(_CPUID_CODE + _XGETBV_CODE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(page))
        cpuid_fn = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.c_uint32,
                                    ctypes.POINTER(ctypes.c_uint32))(base)
        xgetbv_fn = ctypes.CFUNCTYPE(ctypes.c_uint64, ctypes.c_uint32)(base + len(_CPUID_CODE))

        def cpuid(leaf: int, sub: int = 0) -> tuple[int, int, int, int]:
            out = (ctypes.c_uint32 * 4)()
            cpuid_fn(leaf, sub, out)
            return out[0], out[1], out[2], out[3]

        flags: set[str] = set()
        max_leaf = cpuid(0)[0]
        _, _, ecx1, _ = cpuid(1)
        if _bit(ecx1, 19):
            flags.add("sse4_1")
        xcr0 = xgetbv_fn(0) if _bit(ecx1, 27) else 0  # OSXSAVE: xgetbv is allowed
        avx_state = xcr0 & 0x6 == 0x6
        avx512_state = avx_state and xcr0 & 0xE0 == 0xE0
        amx_state = xcr0 & 0x60000 == 0x60000
        if avx_state and _bit(ecx1, 28):
            flags.add("avx")
            if _bit(ecx1, 12):
                flags.add("fma")
        if max_leaf >= 7:
            _, ebx7, ecx7, edx7 = cpuid(7, 0)
            eax71 = cpuid(7, 1)[0]
            if "avx" in flags:
                for name, bit in (("avx2", 5),):
                    if _bit(ebx7, bit):
                        flags.add(name)
                if "avx2" in flags and _bit(eax71, 4):
                    flags.add("avx_vnni")
            if avx512_state:
                for name, bit in (("avx512f", 16), ("avx512bw", 30), ("avx512vl", 31)):
                    if _bit(ebx7, bit):
                        flags.add(name)
                if "avx512f" in flags and _bit(ecx7, 11):
                    flags.add("avx512_vnni")
            if amx_state:
                for name, bit in (("amx_tile", 24), ("amx_int8", 25)):
                    if _bit(edx7, bit):
                        flags.add(name)
        return flags
    finally:
        page.close()


def _x86_model_name() -> str:
    return _cpuinfo_field("model name")


# -- ARM64 Linux: the kernel's hardware capability bits ----------------------------------------
_AT_HWCAP, _AT_HWCAP2 = 16, 26
_HWCAP = {"asimd": 1, "asimddp": 20, "sve": 22}
_HWCAP2 = {"sve2": 1, "i8mm": 13, "bf16": 14}


def _arm_hwcap_flags() -> set[str]:
    libc = ctypes.CDLL(None)
    getauxval = libc.getauxval
    getauxval.restype = ctypes.c_ulong
    getauxval.argtypes = [ctypes.c_ulong]
    hwcap, hwcap2 = int(getauxval(_AT_HWCAP)), int(getauxval(_AT_HWCAP2))
    if hwcap == 0:
        raise OSError("getauxval(AT_HWCAP) gave nothing")
    flags = {name for name, bit in _HWCAP.items() if _bit(hwcap, bit)}
    flags |= {name for name, bit in _HWCAP2.items() if _bit(hwcap2, bit)}
    return flags


def _cpuinfo_text() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_field(name: str) -> str:
    for line in _cpuinfo_text().splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() == name:
            return value.strip()
    return ""


def _cpuinfo_flags() -> set[str]:
    for key in ("flags", "features"):
        value = _cpuinfo_field(key)
        if value:
            return set(value.lower().split())
    return set()


@cache
def cpu_features() -> CpuFeatures:
    """This CPU's int8-relevant features and kernel class (computed once per process)."""
    machine = _machine()
    flags: set[str] | None = None
    source = "none"
    if machine == "x86_64" and sys.platform != "win32":
        try:
            flags, source = _x86_cpuid_flags(), "cpuid"
        except (OSError, ValueError, AttributeError):  # no executable memory here
            flags = None
    elif machine == "aarch64" and sys.platform.startswith("linux"):
        try:
            flags, source = _arm_hwcap_flags(), "hwcap"
        except (OSError, AttributeError):
            flags = None
    if flags is None:
        flags = _cpuinfo_flags()
        source = "/proc/cpuinfo" if flags else "none"
    model = _x86_model_name() if machine == "x86_64" else _cpuinfo_field("cpu part")
    return features_from_flags(machine, flags, source=source, model_name=model)
