"""ONNX export and ONNX Runtime settings: frozen dataclasses checked when they are built."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from typing import Any, Literal

# Hardware presets of ONNX Runtime int8, as optimum's ``AutoQuantizationConfig`` sets them: per-channel weights,
# activations uint8; signed int8 weights except on AVX2, which optimum gives uint8 weights (u8u8 avoids the
# saturation of VPMADDUBSW on CPUs without VNNI); no reduced range (7-bit) unless asked for.
ORT_QUANT_PRESETS: dict[str, dict[str, Any]] = {
    "avx2": {"per_channel": True, "reduce_range": False, "weight_type": "uint8", "activation_type": "uint8"},
    "avx512": {"per_channel": True, "reduce_range": False, "weight_type": "int8", "activation_type": "uint8"},
    "avx512_vnni": {"per_channel": True, "reduce_range": False, "weight_type": "int8", "activation_type": "uint8"},
    "arm64": {"per_channel": True, "reduce_range": False, "weight_type": "int8", "activation_type": "uint8"},
}


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
            instead of int8, unpacking only the gathered rows (:mod:`lightning_distill.core.export.embedding_4bit`);
            in a
            small transformer the word embeddings are most of the bytes (30,522 x 384 of a MiniLM's 17M
            parameters). ``None`` keeps them int8.
        embedding_block_size: Values per scale along the hidden dimension with ``embedding_bits``: smaller blocks
            are more accurate and store more scales (a power of two, >= 16).
        weight_type: Integer type of the quantized weights: ``int8`` (signed; the fast choice on AVX512-VNNI and
            ARM64) or ``uint8`` (optimum's choice for AVX2).
        activation_type: Static only: integer type of the activations; dynamic quantization always uses ``uint8``.
        reduce_range: Quantize weights to 7 bits, for x86 CPUs without VNNI where 8-bit products can saturate;
            try it when int8 on such a CPU loses accuracy.

    :meth:`for_hardware` builds the settings optimum's ``AutoQuantizationConfig`` uses for a CPU family.
    """

    mode: Literal["dynamic", "static"] = "dynamic"
    per_channel: bool = False
    calibration_batches: int = 16
    op_types: tuple[str, ...] | None = None
    embedding_bits: Literal[4] | None = None
    embedding_block_size: int = 32
    weight_type: Literal["int8", "uint8"] = "int8"
    activation_type: Literal["uint8", "int8"] = "uint8"
    reduce_range: bool = False

    @classmethod
    def for_hardware(
        cls, target: Literal["avx2", "avx512", "avx512_vnni", "arm64"], mode: Literal["dynamic", "static"] = "dynamic"
    ) -> OrtQuantConfig:
        """The preset of ``target`` (see :data:`ORT_QUANT_PRESETS`); change fields with ``dataclasses.replace``.

        Raises:
            ValueError: ``target`` is not one of the presets (the message lists them).
        """
        if target not in ORT_QUANT_PRESETS:
            raise ValueError(f"no ONNX Runtime quantization preset {target!r}; choose one of {list(ORT_QUANT_PRESETS)}")
        return replace(cls(mode=mode), **ORT_QUANT_PRESETS[target])

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
        for name in ("weight_type", "activation_type"):
            if getattr(self, name) not in ("int8", "uint8"):
                raise ValueError(f"OrtQuantConfig.{name} must be 'int8' or 'uint8'; got {getattr(self, name)!r}")
        if self.mode == "dynamic" and self.activation_type != "uint8":
            raise ValueError(
                "OrtQuantConfig.activation_type must be 'uint8' with mode='dynamic' (ONNX Runtime quantizes "
                "activations at run time to uint8 only); use mode='static' for int8 activations"
            )


@dataclass(frozen=True)
class OrtSessionConfig:
    """An ONNX Runtime inference session.

    Args:
        intra_op_num_threads: Threads inside one operator (0 lets ONNX Runtime use every core; set it explicitly
            when several processes share a machine).
        inter_op_num_threads: Threads running independent operators in parallel (used with ``parallel`` execution).
        optimization_level: ONNX Runtime graph optimization applied when the session loads the model.
        execution_mode: ``sequential`` or ``parallel`` operator execution.
        providers: ONNX Runtime execution providers, in order of preference (e.g. ``["CUDAExecutionProvider",
            "CPUExecutionProvider"]``: operators CUDA cannot run fall back to the CPU). Each must be installed
            (``onnxruntime.get_available_providers()``: ``onnxruntime-gpu`` brings CUDA and TensorRT,
            ``onnxruntime-openvino`` OpenVINO); one that is not is refused when the config is built.
    """

    intra_op_num_threads: int = 1
    inter_op_num_threads: int = 1
    optimization_level: Literal["disable", "basic", "extended", "all"] = "all"
    execution_mode: Literal["sequential", "parallel"] = "sequential"
    providers: tuple[str, ...] = ("CPUExecutionProvider",)

    def __post_init__(self) -> None:
        object.__setattr__(self, "providers", check_providers(self.providers))
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


def check_providers(providers: Any) -> tuple[str, ...]:
    """``providers`` as a tuple, each checked against the execution providers ONNX Runtime has here.

    Without ONNX Runtime installed the names are only checked to be strings (creating a session then fails, naming
    the package to install).

    Raises:
        ValueError: the list is empty, repeats a name, or names a provider that is not installed; the message lists
            the installed ones.
    """
    if isinstance(providers, str) or not all(isinstance(p, str) and p for p in providers or ()):
        raise ValueError(f"OrtSessionConfig.providers must be a list of provider names; got {providers!r}")
    providers = tuple(providers)
    if not providers or len(set(providers)) != len(providers):
        raise ValueError(
            f"OrtSessionConfig.providers must be a non-empty list of distinct names; got {list(providers)}"
        )
    if importlib.util.find_spec("onnxruntime") is None:
        return providers
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [p for p in providers if p not in available]
    if missing:
        known = set(ort.get_all_providers())
        unknown = [p for p in missing if p not in known]
        if unknown:
            what = f"{unknown} are no ONNX Runtime provider names"
        else:
            what = (
                f"{missing} are not installed in ONNX Runtime {ort.__version__} here (CUDA and TensorRT come with "
                "onnxruntime-gpu, OpenVINO with onnxruntime-openvino)"
            )
        raise ValueError(f"OrtSessionConfig.providers: {what}; available here: {available}")
    return providers
