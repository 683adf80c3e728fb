"""Quantization settings: one frozen dataclass per method, checked when it is built.

Each config is plain data (strings, numbers, tuples of name patterns), so it can be written in YAML under a
callback's ``init_args`` and saved next to a quantized model to rebuild it later.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from fnmatch import fnmatch
from typing import Any, Literal, get_args

Backend = Literal["fbgemm", "x86", "qnnpack", "onednn"]
BACKENDS: tuple[str, ...] = get_args(Backend)
Engine = Literal["eager", "torchao"]
ENGINES: tuple[str, ...] = get_args(Engine)


def _check_choice(owner: str, name: str, value: Any, allowed: tuple[Any, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{owner}.{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")


def skipped(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether the module ``name`` matches one of the ``skip_modules`` patterns (``fnmatch``)."""
    return any(fnmatch(name, p) for p in patterns)


def _check_patterns(owner: str, patterns: Any) -> None:
    if (
        isinstance(patterns, str)
        or not isinstance(patterns, (list, tuple))
        or not all(isinstance(p, str) and p for p in patterns)
    ):
        raise ValueError(
            f"{owner}.skip_modules must be a list of module-name patterns (fnmatch style, e.g. 'classifier' or "
            f"'*.attention.*'); got {patterns!r}"
        )


@dataclass(frozen=True)
class DynamicQuantConfig:
    """Dynamic quantization: ``nn.Linear`` weights stored as int8, activations quantized on the fly at each call.

    Needs no calibration data and applies to any model with ``nn.Linear`` layers (MLPs and transformers alike).

    Args:
        backend: PyTorch quantized engine that packs the weights and runs the int8 kernels.
        dtype: ``qint8`` for int8 weights; ``float16`` stores weights in half precision instead.
        skip_modules: Module-name patterns (``fnmatch``) of layers kept in float, e.g. ``["classifier"]``.
        engine: ``eager`` (default): ``torch.ao.quantization.quantize_dynamic``, deprecated by PyTorch. ``torchao``:
            ``torchao.quantization.quantize_`` with ``Int8DynamicActivationInt8WeightConfig`` (int8 weights and
            per-token int8 activations; ``dtype`` must be ``qint8``); torchao picks its kernels by device, so
            ``backend`` is not used there. Needs the ``[torchao]`` extra.
    """

    backend: Backend = "x86"
    dtype: Literal["qint8", "float16"] = "qint8"
    skip_modules: tuple[str, ...] = ()
    engine: Engine = "eager"

    def __post_init__(self) -> None:
        _check_choice("DynamicQuantConfig", "backend", self.backend, BACKENDS)
        _check_choice("DynamicQuantConfig", "dtype", self.dtype, ("qint8", "float16"))
        _check_choice("DynamicQuantConfig", "engine", self.engine, ENGINES)
        if self.engine == "torchao" and self.dtype != "qint8":
            raise ValueError(
                f"DynamicQuantConfig(engine='torchao') quantizes to int8 only; got dtype={self.dtype!r}: use "
                "dtype='qint8', or engine='eager' for float16 weights"
            )
        _check_patterns("DynamicQuantConfig", self.skip_modules)
        object.__setattr__(self, "skip_modules", tuple(self.skip_modules))


@dataclass(frozen=True)
class StaticQuantConfig:
    """Static quantization: int8 weights and int8 activations whose ranges are calibrated on real batches.

    A model built only from eager-quantizable modules (``Linear``, ``ReLU``, ``Flatten``, ``Dropout``, ``Identity``,
    e.g. the MLPs) is fused (``Linear + ReLU``) and quantized end to end by the eager API. Any other symbolically
    traceable model (e.g. a torchvision CNN) goes through FX graph mode: ``Conv + BatchNorm + ReLU`` and
    ``Linear + ReLU`` are fused and every convolution and linear layer runs in int8. A model that does not trace
    (e.g. a Hugging Face transformer) falls back to the eager API, each ``Linear`` quantized on its own between a
    quantize and a dequantize step; the report's notes say why.

    Args:
        backend: PyTorch quantized engine: ``x86`` (or its older name ``fbgemm``) on x86 servers, ``qnnpack`` on ARM
            and mobile, ``onednn`` for oneDNN.
        calibration_batches: Number of batches of calibration data whose activation ranges are observed.
        skip_modules: Module-name patterns (``fnmatch``) of layers kept in float.
        engine: ``eager`` (default): the eager / FX graph mode path above, deprecated by PyTorch. ``torchao``: PT2E,
            i.e. ``torch.export`` of the forward, ``prepare_pt2e`` with the backend's quantizer
            (``X86InductorQuantizer`` for ``x86``, ``fbgemm`` and ``onednn``; the XNNPACK quantizer of the
            ``executorch`` package for ``qnnpack``), calibration and ``convert_pt2e``; convolutions and linear
            layers run in int8 and ``torch.compile`` lowers them to int8 kernels.
            Needs the ``[torchao]`` extra and a forward that ``torch.export`` captures.
    """

    backend: Backend = "x86"
    calibration_batches: int = 16
    skip_modules: tuple[str, ...] = ()
    engine: Engine = "eager"

    def __post_init__(self) -> None:
        _check_choice("StaticQuantConfig", "backend", self.backend, BACKENDS)
        _check_choice("StaticQuantConfig", "engine", self.engine, ENGINES)
        if not isinstance(self.calibration_batches, int) or self.calibration_batches < 1:
            raise ValueError(
                f"StaticQuantConfig.calibration_batches must be an int >= 1; got {self.calibration_batches!r}"
            )
        _check_patterns("StaticQuantConfig", self.skip_modules)
        object.__setattr__(self, "skip_modules", tuple(self.skip_modules))


@dataclass(frozen=True)
class QATConfig:
    """Quantization-aware training: train with fake-quantized weights and activations, convert to int8 afterwards.

    ``quantize(model, QATConfig(step="prepare"))`` returns a copy ready to train (parameter names unchanged);
    ``quantize(trained, QATConfig(step="convert"))`` returns the int8 model for export. Applies to models built only
    from eager-quantizable modules (the MLPs, prepared in place) and to any symbolically traceable model, e.g. a CNN
    (FX graph mode: ``Conv + BatchNorm + ReLU`` fused and trained with fake quantization); use
    :class:`DynamicQuantConfig` or ONNX Runtime int8 for transformers, which do not trace.

    Args:
        backend: PyTorch quantized engine (see :class:`StaticQuantConfig`).
        step: ``prepare`` before training, ``convert`` after it.
        freeze_observers_epoch: From this epoch on, activation ranges stop moving (used by the QAT callback); ``None``
            keeps observing until the end.
        freeze_bn_epoch: From this epoch on, fused batch-norm statistics are frozen (used by the QAT callback).
        engine: ``eager`` (default): the eager / FX graph mode path, deprecated by PyTorch. ``torchao``: PT2E QAT
            (``torch.export`` of the forward, ``prepare_qat_pt2e`` with the backend's quantizer, see
            :class:`StaticQuantConfig`; ``convert_pt2e`` at the ``convert`` step), through :func:`quantize` only: the
            ``QuantizationAwareTraining`` callback runs the eager engine. Needs the ``[torchao]`` extra.
    """

    backend: Backend = "x86"
    step: Literal["prepare", "convert"] = "prepare"
    freeze_observers_epoch: int | None = None
    freeze_bn_epoch: int | None = None
    engine: Engine = "eager"

    def __post_init__(self) -> None:
        _check_choice("QATConfig", "backend", self.backend, BACKENDS)
        _check_choice("QATConfig", "engine", self.engine, ENGINES)
        _check_choice("QATConfig", "step", self.step, ("prepare", "convert"))
        for name in ("freeze_observers_epoch", "freeze_bn_epoch"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 0):
                raise ValueError(f"QATConfig.{name} must be None or an int >= 0; got {value!r}")


@dataclass(frozen=True)
class BitsAndBytesConfig:
    """bitsandbytes weight quantization of every ``nn.Linear``: int8 (LLM.int8) or 4-bit (nf4 / fp4).

    The layers are replaced by ``bitsandbytes.nn.Linear8bitLt`` / ``Linear4bit``, which run on CPU when used directly
    (transformers' own ``quantization_config`` loading path needs CUDA and is not used). Meant for large models whose
    weights do not fit in memory in float; on small models it is slower than PyTorch or ONNX Runtime int8.

    Args:
        weights: ``int8``, ``nf4`` or ``fp4``.
        threshold: int8 only: activations above this magnitude go through a float path (LLM.int8 outliers); 0 disables
            the outlier path.
        compute_dtype: 4-bit only: dtype of the matrix multiplication after dequantizing the weights.
        skip_modules: Module-name patterns (``fnmatch``) of layers kept in float, e.g. ``["classifier"]``.
        device: Where the layers are quantized and the model is put: ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
            bitsandbytes quantizes a layer when it first moves to a device, and an int8 layer quantized on CPU
            then moved to a GPU fails at its first forward ("Expected a cuda device, but got: cpu", seen on an H200
            with bitsandbytes 0.50.2; 4-bit layers move fine): for int8 on a GPU, quantize with ``device="cuda"``
            (checked there: ``benchmarks/gpu_bnb_check.py``).
            :func:`~lightning_distill.core.quantization.load_quantized` always rebuilds on CPU.
    """

    weights: Literal["int8", "nf4", "fp4"] = "int8"
    threshold: float = 6.0
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    skip_modules: tuple[str, ...] = ()
    device: str = "cpu"

    def __post_init__(self) -> None:
        _check_choice("BitsAndBytesConfig", "weights", self.weights, ("int8", "nf4", "fp4"))
        _check_choice("BitsAndBytesConfig", "compute_dtype", self.compute_dtype, ("float32", "bfloat16", "float16"))
        if self.threshold < 0:
            raise ValueError(f"BitsAndBytesConfig.threshold must be >= 0; got {self.threshold!r}")
        _check_patterns("BitsAndBytesConfig", self.skip_modules)
        object.__setattr__(self, "skip_modules", tuple(self.skip_modules))
        if not re.fullmatch(r"cpu|cuda(:\d+)?", str(self.device)):
            raise ValueError(f"BitsAndBytesConfig.device must be 'cpu', 'cuda' or 'cuda:N'; got {self.device!r}")


QuantConfig = DynamicQuantConfig | StaticQuantConfig | QATConfig | BitsAndBytesConfig
_CONFIG_TYPES: dict[str, type] = {
    cls.__name__: cls for cls in (DynamicQuantConfig, StaticQuantConfig, QATConfig, BitsAndBytesConfig)
}


def config_to_dict(config: QuantConfig) -> dict[str, Any]:
    """A config as plain data: ``{"type": <class name>, **fields}``."""
    return {"type": type(config).__name__, **asdict(config)}


def config_from_dict(data: dict[str, Any]) -> QuantConfig:
    """Inverse of :func:`config_to_dict`."""
    data = dict(data)
    name = data.pop("type", None)
    if name not in _CONFIG_TYPES:
        raise ValueError(f"unknown quantization config type {name!r}; expected one of {sorted(_CONFIG_TYPES)}")
    return _CONFIG_TYPES[name](**data)
