"""Accuracy, size, latency and throughput of deployable models, and the reports built from them."""

from lightning_distill.core.benchmark.artifacts import (
    benchmark_artifact,
    benchmark_exported,
    benchmark_onnx,
    benchmark_quantized,
    onnx_parameter_count,
)
from lightning_distill.core.benchmark.machine import machine_info, machine_summary
from lightning_distill.core.benchmark.measure import (
    BenchmarkResult,
    benchmark,
    benchmark_module,
    count_parameters,
    file_size_mb,
    module_predictor,
    state_dict_size_mb,
)
from lightning_distill.core.benchmark.plot import plot_accuracy_latency
from lightning_distill.core.benchmark.portable import relative_paths
from lightning_distill.core.benchmark.report import (
    markdown_table,
    report_markdown,
    with_ratios,
    write_report,
    write_rows,
)

__all__ = [
    "BenchmarkResult",
    "benchmark",
    "benchmark_artifact",
    "benchmark_exported",
    "benchmark_module",
    "benchmark_onnx",
    "benchmark_quantized",
    "count_parameters",
    "file_size_mb",
    "machine_info",
    "machine_summary",
    "markdown_table",
    "module_predictor",
    "onnx_parameter_count",
    "plot_accuracy_latency",
    "relative_paths",
    "report_markdown",
    "state_dict_size_mb",
    "with_ratios",
    "write_report",
    "write_rows",
]
