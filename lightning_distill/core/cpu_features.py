"""What the CPU this process runs on can do for int8 kernels, read from ``/proc/cpuinfo``; no Lightning, no torch.

x86 CPUs multiply 8-bit integers fast and exactly with a dot-product instruction (AVX-512 VNNI, AVX-VNNI, AMX);
without one, int8 kernels fall back to ``VPMADDUBSW``, whose 16-bit sums of two uint8 x int8 products saturate
unless activations keep to 7 bits (``reduce_range``). ARM's equivalent is the ``asimddp`` dot product.
"""

from __future__ import annotations

import platform
from pathlib import Path

__all__ = ["INT8_DOT_PRODUCT_FLAGS", "cpu_model_and_flags", "has_int8_dot_product", "is_x86"]

INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp")


def cpu_model_and_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, set[str]]:
    """The first CPU's model name and flags (Linux ``/proc/cpuinfo``); ``("", set())`` where there is no such file."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return "", set()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    return model, flags


def has_int8_dot_product(flags: set[str] | None = None) -> bool:
    """Whether the CPU (``flags``, by default this machine's) has an int8 dot-product instruction."""
    flags = cpu_model_and_flags()[1] if flags is None else flags
    return any(flag in flags for flag in INT8_DOT_PRODUCT_FLAGS)


def is_x86() -> bool:
    """Whether this process runs on an x86 CPU."""
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")
