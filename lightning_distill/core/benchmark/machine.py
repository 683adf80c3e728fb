"""The machine a measurement was taken on: CPU, the instruction sets its int8 and float kernels use, threads, versions.

A latency, and above all a speed-up of int8 over float, is a property of the CPU as much as of the model: ONNX Runtime
and PyTorch multiply int8 matrices with AVX-512 VNNI (or AMX, ARM dot-product) instructions where the CPU has them
and fall back to slower AVX2 sequences where it does not. Reports carry this record so that figures from two machines
are not compared as if they came from one.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

import torch

from lightning_distill.core.cpu_features import cpu_model_and_flags, has_int8_dot_product

__all__ = ["INT8_FLAGS", "machine_info", "machine_summary"]

# CPU flags (as /proc/cpuinfo spells them) that decide which int8 and float kernels run.
INT8_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "amx_bf16",
    "asimd",
    "asimddp",
    "i8mm",
)


def machine_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """What a benchmark should record beside its figures.

    Returns:
        ``cpu`` (model name, else :func:`platform.processor`), ``machine`` (``x86_64``, ``aarch64``...),
        ``logical_cpus`` (usable by this process), ``torch_cpu_capability`` (the kernels PyTorch dispatches to:
        ``AVX2``, ``AVX512``...), ``cpu_flags`` (those of :data:`INT8_FLAGS` the CPU has), ``int8_dot_product``
        (whether it has an int8 dot-product instruction: VNNI, AMX or ARM's ``asimddp``), ``torch_threads`` and the
        versions of Python, torch and ONNX Runtime (None when not installed).
    """
    model, flags = cpu_model_and_flags(cpuinfo)
    present = [flag for flag in INT8_FLAGS if flag in flags]
    try:
        import onnxruntime

        ort_version: str | None = onnxruntime.__version__
    except ImportError:
        ort_version = None
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model or platform.processor() or "unknown",
        "machine": platform.machine(),
        "logical_cpus": usable,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_flags": present,
        "int8_dot_product": has_int8_dot_product(flags),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": ort_version,
    }


def machine_summary(info: dict[str, Any]) -> str:
    """One line for a report: ``AMD EPYC, 2 CPUs, x86_64, AVX2 kernels, no int8 dot product (flags: avx2 fma)...``."""
    dot = "int8 dot product" if info["int8_dot_product"] else "no int8 dot-product instruction (no VNNI/AMX)"
    flags = " ".join(info["cpu_flags"]) or "none of " + " ".join(INT8_FLAGS[:3])
    return (
        f"{info['cpu']}, {info['logical_cpus']} CPUs, {info['machine']}, PyTorch {info['torch_cpu_capability']} "
        f"kernels, {dot} (flags: {flags}); torch {info['torch']}, onnxruntime {info['onnxruntime']}"
    )
