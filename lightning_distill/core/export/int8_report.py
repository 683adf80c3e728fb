"""Which weights ONNX Runtime int8 quantized: a per-initializer :class:`QuantizationReport` of an int8 ONNX graph."""

from __future__ import annotations

from pathlib import Path

from lightning_distill.core._optional import require
from lightning_distill.core.export.config import OrtQuantConfig
from lightning_distill.core.quantization.report import LayerOutcome, QuantizationReport

_FLOAT_TYPES = {1, 10, 11, 16}  # onnx.TensorProto FLOAT, FLOAT16, DOUBLE, BFLOAT16


def onnx_int8_report(float_path: str | Path, int8_path: str | Path, config: OrtQuantConfig) -> QuantizationReport:
    """Compare each weight (an initializer of two or more dimensions) of the float graph with the int8 graph.

    A weight counts as quantized when the int8 graph no longer holds it in float and holds an integer initializer
    derived from its name (ONNX Runtime writes ``<name>_quantized``, ``<name>_Transposed_quantized``, ``<name>_Q4``,
    ...). Layers are named by their initializer (e.g. ``model.hidden.0.weight``; by the consuming node where the
    exporter gave the weight a generated ``onnx::`` name) and typed by the operator that consumes them.
    """
    onnx = require("onnx", "the ONNX int8 report")
    float_graph = onnx.load(str(float_path), load_external_data=False).graph
    int8_graph = onnx.load(str(int8_path), load_external_data=False).graph
    consumers = {name: node for node in float_graph.node for name in node.input}
    int8_float = {t.name for t in int8_graph.initializer if t.data_type in _FLOAT_TYPES}
    int8_integer = [t.name for t in int8_graph.initializer if t.data_type not in _FLOAT_TYPES]
    outcomes = []
    for tensor in float_graph.initializer:
        if len(tensor.dims) < 2:
            continue
        node = consumers.get(tensor.name)
        op = node.op_type if node is not None else "unused"
        # The TorchScript exporter names transposed MatMul weights onnx::MatMul_<n>: name those by their node.
        name = node.name if tensor.name.startswith("onnx::") and node is not None and node.name else tensor.name
        derived = [n for n in int8_integer if n.startswith(tensor.name + "_")]
        if derived and tensor.name not in int8_float:
            data = next((n for n in derived if not n.endswith("zero_point")), derived[0])
            outcomes.append(LayerOutcome(name, op, "quantized", data))
        else:
            outcomes.append(LayerOutcome(name, op, "float", tensor.name, _float_reason(op, config)))
    return QuantizationReport(method=f"OrtQuantConfig(mode={config.mode!r})", layers=tuple(outcomes))


def _float_reason(op: str, config: OrtQuantConfig) -> str:
    if config.op_types is not None and op not in config.op_types:
        return f"its operator {op} is not in op_types {list(config.op_types)}"
    return f"ONNX Runtime {config.mode} int8 left this {op} input in float"
