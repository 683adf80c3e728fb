"""ONNX export and ONNX Runtime settings: frozen dataclasses checked when they are built."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class OnnxExportConfig:
    """How a PyTorch classifier becomes an ONNX graph.

    Args:
        opset: ONNX opset version (18 is the lowest the ``dynamo`` exporter writes natively; 17 added
            LayerNormalization; ONNX Runtime 1.20+ runs up to 21).
        input_names: Names of the graph inputs, in order. ``None`` takes the keys of a dict of example inputs
            (``input_ids``, ``attention_mask``, ...) or ``["input"]`` for a single tensor.
        output_names: Names of the graph outputs; a classifier has one, its logits.
        dynamic_batch: Make axis 0 of every input and output dynamic.
        dynamic_sequence: Make axis 1 of every 2-D integer input (token ids, masks) dynamic, for variable-length text.
        dynamo: Use the ``torch.export``-based exporter (PyTorch's default since 2.9) instead of the TorchScript one.
            The TorchScript exporter is the default here: it exports a Hugging Face BERT with dynamic batch and
            sequence axes in well under a second and the graphs match PyTorch to 1e-8; ``dynamo=True`` gives the same
            numbers but takes several seconds and prints its progress.
        parity_atol: Largest allowed absolute difference between ONNX Runtime and PyTorch logits in the parity check.
    """

    opset: int = 18
    input_names: tuple[str, ...] | None = None
    output_names: tuple[str, ...] = ("logits",)
    dynamic_batch: bool = True
    dynamic_sequence: bool = True
    dynamo: bool = False
    parity_atol: float = 1e-4

    def __post_init__(self) -> None:
        if not isinstance(self.opset, int) or not 11 <= self.opset <= 21:
            raise ValueError(f"OnnxExportConfig.opset must be an int in [11, 21]; got {self.opset!r}")
        if self.input_names is not None:
            object.__setattr__(self, "input_names", tuple(self.input_names))
            _check_names("input_names", self.input_names)
        object.__setattr__(self, "output_names", tuple(self.output_names))
        _check_names("output_names", self.output_names)
        if self.parity_atol <= 0:
            raise ValueError(f"OnnxExportConfig.parity_atol must be > 0; got {self.parity_atol!r}")


def _check_names(field: str, names: tuple[str, ...]) -> None:
    if not names or not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"OnnxExportConfig.{field} must be a non-empty list of distinct names; got {list(names)!r}")


@dataclass(frozen=True)
class OrtQuantConfig:
    """ONNX Runtime int8 quantization of an exported graph.

    Args:
        mode: ``dynamic``: int8 weights, activations quantized at run time (no data needed; the usual choice for
            transformers on CPU). ``static``: activation ranges calibrated on real batches (QDQ format).
        per_channel: One scale per output channel of each weight instead of one per tensor.
        calibration_batches: Static only: number of batches of calibration data.
        op_types: Operator types to quantize; ``None`` lets ONNX Runtime choose (MatMul, Gemm, Attention, ...).
        embedding_bits: Dynamic only: ``4`` stores the embedding tables (``Gather`` of a weight) block-wise in 4 bits
            (ONNX Runtime's ``GatherBlockQuantized``) instead of int8; in a small transformer the word embeddings
            are most of the bytes (30,522 x 384 of a MiniLM's 17M parameters). ``None`` keeps them int8.
        embedding_block_size: Values per scale along the hidden dimension with ``embedding_bits``: smaller blocks
            are more accurate and store more scales (a power of two, >= 16).
    """

    mode: Literal["dynamic", "static"] = "dynamic"
    per_channel: bool = False
    calibration_batches: int = 16
    op_types: tuple[str, ...] | None = None
    embedding_bits: Literal[4] | None = None
    embedding_block_size: int = 32

    def __post_init__(self) -> None:
        if self.mode not in ("dynamic", "static"):
            raise ValueError(f"OrtQuantConfig.mode must be 'dynamic' or 'static'; got {self.mode!r}")
        if not isinstance(self.calibration_batches, int) or self.calibration_batches < 1:
            raise ValueError(
                f"OrtQuantConfig.calibration_batches must be an int >= 1; got {self.calibration_batches!r}"
            )
        if self.op_types is not None:
            object.__setattr__(self, "op_types", tuple(self.op_types))
        if self.embedding_bits is not None:
            if self.embedding_bits != 4:
                raise ValueError(f"OrtQuantConfig.embedding_bits must be 4 or None; got {self.embedding_bits!r}")
            if self.mode != "dynamic":
                raise ValueError("OrtQuantConfig.embedding_bits needs mode='dynamic'")
        block = self.embedding_block_size
        if not isinstance(block, int) or block < 16 or block & (block - 1):
            raise ValueError(f"OrtQuantConfig.embedding_block_size must be a power of two >= 16; got {block!r}")


@dataclass(frozen=True)
class OrtSessionConfig:
    """An ONNX Runtime CPU inference session.

    Args:
        intra_op_num_threads: Threads inside one operator (0 lets ONNX Runtime use every core; set it explicitly
            when several processes share a machine).
        inter_op_num_threads: Threads running independent operators in parallel (used with ``parallel`` execution).
        optimization_level: ONNX Runtime graph optimization applied when the session loads the model.
        execution_mode: ``sequential`` or ``parallel`` operator execution.
    """

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"

    def __post_init__(self) -> None:
        for name in ("intra_op_num_threads", "inter_op_num_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"OrtSessionConfig.{name} must be an int >= 0; got {value!r}")
        if self.optimization_level not in ("disable", "basic", "extended", "all"):
            raise ValueError(
                "OrtSessionConfig.optimization_level must be one of 'disable', 'basic', 'extended', 'all'; "
                f"got {self.optimization_level!r}"
            )
        if self.execution_mode not in ("sequential", "parallel"):
            raise ValueError(
                f"OrtSessionConfig.execution_mode must be 'sequential' or 'parallel'; got {self.execution_mode!r}"
            )
