"""Measure a deployable model the same way whatever it is: accuracy, size on disk, latency and throughput.

A model is measured through a *predict function* that takes raw inputs (image tensors, or a list of strings for
text) and returns logits, so tokenization and any input conversion are inside every latency figure, as a deployed
service would pay them.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

PredictFn = Callable[[Any], Any]


@dataclass(frozen=True)
class BenchmarkResult:
    """One row of a benchmark report. Latencies are of one example (batch 1), in milliseconds."""

    name: str
    accuracy: float
    params: int | None
    size_mb: float
    latency_ms_mean: float
    latency_ms_std: float
    latency_ms_p50: float
    latency_ms_p95: float
    throughput_per_s: float
    num_threads: int
    throughput_batch_size: int
    num_examples: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def torch_threads(num_threads: int):
    """Run the body with ``torch.set_num_threads(num_threads)`` and restore the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def count_parameters(model: nn.Module) -> int:
    """Number of parameter elements (quantized modules report their packed weights through ``state_dict``)."""
    params = sum(p.numel() for p in model.parameters())
    if params == 0:  # eager-quantized modules keep their weights in packed params, not nn.Parameters
        params = sum(t.numel() for t in _state_tensors(model))
    return params


def _state_tensors(model: nn.Module) -> list[Tensor]:
    tensors = []
    for value in model.state_dict().values():
        if (isinstance(value, Tensor) and value.is_floating_point()) or (
            isinstance(value, Tensor) and value.is_quantized
        ):
            tensors.append(value)
        elif isinstance(value, tuple):
            tensors += [v for v in value if isinstance(v, Tensor)]
    return tensors


def file_size_mb(path: str | Path) -> float:
    """Size of a file, or of all files under a folder, in MB (10^6 bytes)."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6
    return path.stat().st_size / 1e6


def state_dict_size_mb(model: nn.Module) -> float:
    """Size of ``torch.save(model.state_dict())`` in MB, for models not yet saved anywhere."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        torch.save(model.state_dict(), path)
        return file_size_mb(path)


def _to_tensor(output: Any) -> Tensor:
    if isinstance(output, Tensor):
        return output
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, (list, tuple)):
        output = output[0]
    return torch.as_tensor(np.asarray(output))


def _slice(inputs: Any, start: int, stop: int) -> Any:
    return inputs[start:stop]


def accuracy(predict: PredictFn, inputs: Any, labels: Tensor, batch_size: int = 256) -> float:
    """Top-1 accuracy of ``predict`` over ``inputs`` (a tensor or a sequence), in batches."""
    if len(labels) == 0:
        raise ValueError("cannot measure accuracy on an empty split")
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = _to_tensor(predict(_slice(inputs, start, start + batch_size)))
        correct += int((logits.argmax(-1).cpu() == labels[start : start + batch_size].cpu()).sum())
    return correct / len(labels)


def latency_ms(predict: PredictFn, example: Any, warmup: int = 10, iterations: int = 100) -> list[float]:
    """Wall-clock milliseconds of ``iterations`` calls of ``predict(example)`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        predict(example)
    timings = []
    for _ in range(iterations):
        start = time.perf_counter()
        predict(example)
        timings.append((time.perf_counter() - start) * 1e3)
    return timings


def summarize_latency(timings: Sequence[float]) -> dict[str, float]:
    """Mean, standard deviation, median and 95th percentile of latencies in milliseconds."""
    ordered = np.asarray(timings)
    return {
        "latency_ms_mean": float(ordered.mean()),
        "latency_ms_std": float(statistics.pstdev(timings)) if len(timings) > 1 else 0.0,
        "latency_ms_p50": float(np.percentile(ordered, 50)),
        "latency_ms_p95": float(np.percentile(ordered, 95)),
    }


def interleaved_latency(
    predictors: Mapping[str, PredictFn], queries: list[Any], turns: int, warmup: int = 5, num_threads: int = 1
) -> dict[str, dict[str, float]]:
    """Batch-1 latency of each predictor over ``queries``, timed in ``turns`` turns whose order alternates.

    Args:
        predictors: Raw inputs -> logits, by name (e.g. ``candidate`` and ``teacher``).
        queries: Batch-1 raw inputs; every predictor answers each of them once per turn.
        turns: Turns per predictor; the order of the predictors is reversed every other turn.
        warmup: Untimed calls of each predictor before the first turn.
        num_threads: PyTorch intra-op threads while timing.

    Returns:
        By name: mean, std, p50 and p95 in milliseconds (:func:`summarize_latency`) and ``num_threads``.
    """
    if not queries:
        raise ValueError("no queries to time: the query sample is empty")
    names = list(predictors)
    timings: dict[str, list[float]] = {name: [] for name in names}
    with torch_threads(num_threads), torch.inference_mode():
        for name in names:
            latency_ms(predictors[name], queries[0], warmup=warmup, iterations=0)
        for turn in range(turns):
            for name in names if turn % 2 == 0 else reversed(names):
                for query in queries:
                    timings[name] += latency_ms(predictors[name], query, warmup=0, iterations=1)
    return {
        name: {**{k: round(v, 5) for k, v in summarize_latency(timings[name]).items()}, "num_threads": num_threads}
        for name in names
    }


def benchmark(
    predict: PredictFn,
    inputs: Any,
    labels: Tensor,
    *,
    name: str,
    size_mb: float,
    params: int | None = None,
    num_threads: int = 1,
    warmup: int = 10,
    iterations: int = 100,
    throughput_batch_size: int = 64,
    throughput_iterations: int = 10,
) -> BenchmarkResult:
    """Measure ``predict`` on raw ``inputs`` with ``labels``.

    Args:
        predict: Raw inputs -> logits (a tensor, a numpy array, or an object with ``.logits``).
        inputs: Raw test inputs: a tensor of examples, or a sequence such as a list of strings.
        labels: Integer labels of ``inputs``.
        name: Row name in the report.
        size_mb: Size of the saved artifact on disk (see :func:`file_size_mb`).
        params: Parameter count, where the artifact has one.
        num_threads: Intra-op threads for PyTorch during the measurement (recorded in the row).
        warmup: Untimed calls before timing latency.
        iterations: Timed batch-1 calls.
        throughput_batch_size: Batch size of the throughput measurement.
        throughput_iterations: Timed calls at that batch size.
    """
    if len(labels) == 0:
        raise ValueError(f"{name}: no test examples to benchmark")
    with torch_threads(num_threads), torch.inference_mode():
        acc = accuracy(predict, inputs, labels)
        timings = latency_ms(predict, _slice(inputs, 0, 1), warmup=warmup, iterations=iterations)
        batch = _slice(inputs, 0, throughput_batch_size)
        n = len(batch)
        batch_timings = latency_ms(predict, batch, warmup=2, iterations=throughput_iterations)
    return BenchmarkResult(
        name=name,
        accuracy=acc,
        params=params,
        size_mb=round(size_mb, 4),
        **{k: round(v, 4) for k, v in summarize_latency(timings).items()},
        throughput_per_s=round(n / (statistics.median(batch_timings) / 1e3), 2),
        num_threads=num_threads,
        throughput_batch_size=n,
        num_examples=len(labels),
    )


def module_predictor(model: nn.Module, encode: Callable[[Any], Any] | None = None) -> PredictFn:
    """A predict function for a PyTorch model: ``encode`` turns raw inputs into model inputs (a tensor or a dict)."""
    model.eval()

    def predict(raw: Any) -> Tensor:
        model_inputs = encode(raw) if encode is not None else raw
        if isinstance(model_inputs, dict):
            output = model(**model_inputs)
        else:
            output = model(model_inputs)
        return _to_tensor(output)

    return predict


def benchmark_module(
    model: nn.Module,
    datamodule: Any,
    *,
    name: str,
    artifact_path: str | Path | None = None,
    split: str = "test",
    num_threads: int = 1,
    warmup: int = 10,
    iterations: int = 100,
) -> BenchmarkResult:
    """Benchmark a PyTorch model on a data module's ``benchmark_data(split)``, encoded by its ``encode``.

    The size is that of ``artifact_path`` when given, else that of the model's saved ``state_dict``.
    """
    inputs, labels = datamodule.benchmark_data(split)
    size = file_size_mb(artifact_path) if artifact_path is not None else state_dict_size_mb(model)
    return benchmark(
        module_predictor(model, datamodule.encode),
        inputs,
        labels,
        name=name,
        size_mb=size,
        params=count_parameters(model),
        num_threads=num_threads,
        warmup=warmup,
        iterations=iterations,
    )
