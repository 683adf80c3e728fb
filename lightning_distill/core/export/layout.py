"""The files of an export folder: optimum's graph names, and what each graph is."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

__all__ = ["GRAPH_DESCRIPTIONS", "GRAPH_FILES", "GraphKind", "served_graph", "usage_lines"]

GraphKind = Literal["fp32", "optimized", "int8", "int8_emb4"]

# optimum's names (its ORTOptimizer writes <name>_optimized.onnx, its ORTQuantizer <name>_quantized.onnx); the graph
# with 4-bit embedding tables has no optimum counterpart and keeps the quantized prefix.
GRAPH_FILES: dict[str, str] = {
    "fp32": "model.onnx",
    "optimized": "model_optimized.onnx",
    "int8": "model_quantized.onnx",
    "int8_emb4": "model_quantized_emb4.onnx",
}
GRAPH_DESCRIPTIONS = {
    "fp32": "fp32, as exported from PyTorch (checked against PyTorch's logits)",
    "optimized": "fp32, optimized by ONNX Runtime (fused attention, LayerNorm and GELU)",
    "int8": "ONNX Runtime dynamic int8 (weights int8, activations quantized at run time)",
    "int8_emb4": "int8 with the embedding tables stored block-wise in 4 bits",
}


def served_graph(folder: Path) -> str:
    """The graph a model card's example loads: the int8 one where the folder has it, else the fp32 one."""
    return next((n for n in ("model_quantized.onnx", "model.onnx") if (folder / n).is_file()), "model.onnx")


def usage_lines(graph: str, call: str) -> list[str]:
    """The start of a model card's "Use" section: ``load_exported`` of ``graph``, then ``call`` (the python block is
    left open for the caller to close)."""
    return [
        "",
        "## Use",
        "",
        "```python",
        "from lightning_distill.core.export import load_exported",
        "",
        f'classify = load_exported("path/to/this/folder", graph="{graph}")',
        call,
    ]
