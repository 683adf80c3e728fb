"""Accuracy, size, latency and throughput of deployable models, and the reports built from them."""

from lightning_distill.benchmark.measure import (
    BenchmarkResult,
    benchmark,
    benchmark_module,
    count_parameters,
    file_size_mb,
    module_predictor,
    state_dict_size_mb,
)
from lightning_distill.benchmark.report import markdown_table, write_rows

__all__ = [
    "BenchmarkResult",
    "benchmark",
    "benchmark_module",
    "count_parameters",
    "file_size_mb",
    "markdown_table",
    "module_predictor",
    "state_dict_size_mb",
    "write_rows",
]
