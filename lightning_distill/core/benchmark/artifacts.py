"""Benchmark rows for each kind of artifact a recipe writes, all measured by :func:`benchmark` on raw inputs.

Every function reloads its artifact from disk, so the figures are those of what would be deployed, and the size is
that of the file (or folder) on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from lightning_distill.core._optional import require
from lightning_distill.core.benchmark.measure import BenchmarkResult, benchmark, benchmark_module, file_size_mb
from lightning_distill.core.export.embedding_4bit import PACKED_SUFFIX, WIDEN_SUFFIX


def benchmark_quantized(
    path: str | Path, float_model: nn.Module, datamodule: Any, *, name: str, **kwargs: Any
) -> BenchmarkResult:
    """A PyTorch model saved by ``save_quantized``, rebuilt on ``float_model`` (same architecture)."""
    from lightning_distill.core.quantization import load_quantized

    return benchmark_module(load_quantized(path, float_model), datamodule, name=name, artifact_path=path, **kwargs)


def onnx_parameter_count(path: str | Path) -> int:
    """Elements of the weight initializers of an ONNX graph (int8 and 4-bit weights count once, like their float
    originals).

    Scalars and one-element tensors (the scales and zero points of int8 graphs, constants of optimized ones) are not
    parameters and are left out, and neither are per-channel scales and zero points (``<weight>_scale``,
    ``<weight>_zero_point``) nor the per-block ones of block-quantized operators and of 4-bit embedding tables
    (:mod:`lightning_distill.core.export.embedding_4bit`), nor int32/int64 tensors (shapes and position indices that
    ONNX
    Runtime's pre-processing folds into initializers).
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
        sum(
            math.prod(t.dims) * (2 if t.name.endswith(PACKED_SUFFIX) else 1)  # two 4-bit values per byte
            for t in graph.initializer
            if math.prod(t.dims) > 1
            and t.name not in quantization
            and not t.name.endswith(("_scale", "_zero_point", WIDEN_SUFFIX))
            and t.data_type not in _INDEX_TYPES
        )
    )


_INDEX_TYPES = {6, 7}  # onnx.TensorProto.INT32, INT64

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
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> BenchmarkResult:
    """An ONNX graph in an ONNX Runtime session on ``providers`` with ``num_threads`` intra-op threads, fed by the
    data module's ``encode``."""
    from lightning_distill.core.export import create_session, onnx_predictor

    session = create_session(path, _session_config(num_threads, providers))
    predict = onnx_predictor(session, datamodule.encode)
    return _benchmark_graph(predict, path, datamodule, name, split, num_threads, warmup, iterations)


def _benchmark_graph(
    predict: Any,
    graph: str | Path,
    datamodule: Any,
    name: str,
    split: str,
    num_threads: int,
    warmup: int,
    iterations: int,
) -> BenchmarkResult:
    """``predict`` on the data module's raw ``split``, with the size and parameter count of the ONNX file ``graph``."""
    inputs, labels = datamodule.benchmark_data(split)
    return benchmark(
        predict,
        inputs,
        labels,
        name=name,
        size_mb=file_size_mb(graph),
        params=onnx_parameter_count(graph),
        num_threads=num_threads,
        warmup=warmup,
        iterations=iterations,
    )


def _session_config(num_threads: int, providers: Sequence[str]) -> Any:
    from lightning_distill.core.export import OrtSessionConfig

    return OrtSessionConfig(intra_op_num_threads=num_threads, inter_op_num_threads=1, providers=tuple(providers))


def benchmark_exported(
    folder: str | Path,
    datamodule: Any,
    *,
    name: str,
    graph: str = "model_quantized.onnx",
    split: str = "test",
    num_threads: int = 1,
    warmup: int = 10,
    iterations: int = 100,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> BenchmarkResult:
    """One graph of an export folder, run as a deployment would: the folder's own tokenizer and label ids.

    The size is that of the graph file (as for :func:`benchmark_onnx`), not of the tokenizer beside it.

    Raises:
        ValueError: the folder's labels (``config.json``) differ from the data module's ``id2label``, so accuracy
            would compare different classes.
    """
    from lightning_distill.core.export import load_exported

    classifier = load_exported(folder, graph, _session_config(num_threads, providers))
    ours = getattr(datamodule, "id2label", None)
    if ours is not None and {int(k): str(v) for k, v in ours.items()} != classifier.id2label:
        differing = [i for i in sorted(ours) if classifier.id2label.get(int(i)) != str(ours[i])][:3]
        raise ValueError(
            f"export folder {str(folder)!r} names its labels differently from the data: "
            + ", ".join(f"id {i}: {classifier.id2label.get(int(i))!r} vs {ours[i]!r}" for i in differing)
            + "; benchmark it on the data it was trained on"
        )
    return _benchmark_graph(
        classifier.logits, classifier.graph, datamodule, name, split, num_threads, warmup, iterations
    )


def benchmark_artifact(
    path: str | Path,
    datamodule: Any,
    *,
    name: str,
    float_model: nn.Module | None = None,
    graph: str = "model_quantized.onnx",
    split: str = "test",
    num_threads: int = 1,
    warmup: int = 10,
    iterations: int = 100,
    providers: Sequence[str] = ("CPUExecutionProvider",),
) -> BenchmarkResult:
    """Benchmark whatever artifact ``path`` is: an export folder (its ``graph``), an ``.onnx`` file, or a ``.pt`` of
    ``save_quantized`` (rebuilt on ``float_model``, the float model of the same architecture).

    Raises:
        FileNotFoundError: nothing at ``path``.
        ValueError: a ``.pt`` without ``float_model``, or a file of another kind (the message lists the kinds).
    """
    path = Path(path)
    options = {"name": name, "split": split, "num_threads": num_threads, "warmup": warmup, "iterations": iterations}
    if path.is_dir():
        return benchmark_exported(path, datamodule, graph=graph, providers=providers, **options)
    if not path.is_file():
        raise FileNotFoundError(f"no artifact at {str(path)!r}")
    if path.suffix == ".onnx":
        return benchmark_onnx(path, datamodule, providers=providers, **options)
    if path.suffix == ".pt":
        if float_model is None:
            raise ValueError(f"{path} is a quantized PyTorch model: its float_model (same architecture) is needed")
        return benchmark_quantized(path, float_model, datamodule, **options)
    raise ValueError(
        f"cannot benchmark {str(path)!r}: an artifact is an export folder, an .onnx file or a .pt of save_quantized"
    )
