"""Benchmark rows for each kind of artifact a recipe writes, all measured by :func:`benchmark` on raw inputs.

Every function reloads its artifact from disk, so the figures are those of what would be deployed, and the size is
that of the file (or folder) on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from lightning_distill._optional import require
from lightning_distill.benchmark.measure import BenchmarkResult, benchmark, benchmark_module, file_size_mb


def benchmark_quantized(
    path: str | Path, float_model: nn.Module, datamodule: Any, *, name: str, **kwargs: Any
) -> BenchmarkResult:
    """A PyTorch model saved by ``save_quantized``, rebuilt on ``float_model`` (same architecture)."""
    from lightning_distill.quantization import load_quantized

    return benchmark_module(load_quantized(path, float_model), datamodule, name=name, artifact_path=path, **kwargs)


def onnx_parameter_count(path: str | Path) -> int:
    """Elements of the weight initializers of an ONNX graph (int8 and 4-bit weights count once, like their float
    originals).

    Scalars and one-element tensors (the scales and zero points of int8 graphs, constants of optimized ones) are not
    parameters and are left out, and neither are the per-block scales and zero points of block-quantized operators.
    """
    import math

    onnx = require("onnx", "onnx_parameter_count")
    graph = onnx.load(str(path), load_external_data=False).graph
    quantization = {
        name
        for node in graph.node
        if node.op_type in _BLOCK_QUANTIZED_INPUTS
        for index, name in enumerate(node.input)
        if index in _BLOCK_QUANTIZED_INPUTS[node.op_type]
    }
    return int(
        sum(math.prod(t.dims) for t in graph.initializer if math.prod(t.dims) > 1 and t.name not in quantization)
    )


# Inputs that hold quantization parameters (scales, zero points, group indices), by position.
_BLOCK_QUANTIZED_INPUTS = {"GatherBlockQuantized": {2, 3}, "MatMulNBits": {2, 3, 4}}


def benchmark_onnx(
    path: str | Path,
    datamodule: Any,
    *,
    name: str,
    split: str = "test",
    num_threads: int = 1,
    warmup: int = 10,
    iterations: int = 100,
) -> BenchmarkResult:
    """An ONNX graph in an ONNX Runtime CPU session with ``num_threads`` intra-op threads."""
    from lightning_distill.export import OrtSessionConfig, create_session, onnx_predictor

    session = create_session(path, OrtSessionConfig(intra_op_num_threads=num_threads, inter_op_num_threads=1))
    inputs, labels = datamodule.benchmark_data(split)
    return benchmark(
        onnx_predictor(session, datamodule.encode),
        inputs,
        labels,
        name=name,
        size_mb=file_size_mb(path),
        params=onnx_parameter_count(path),
        num_threads=num_threads,
        warmup=warmup,
        iterations=iterations,
    )
