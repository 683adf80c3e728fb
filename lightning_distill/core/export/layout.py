"""The files of an export folder: optimum's graph names, and what each graph is."""

from __future__ import annotations

from typing import Literal

__all__ = ["GRAPH_DESCRIPTIONS", "GRAPH_FILES", "GraphKind"]

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
