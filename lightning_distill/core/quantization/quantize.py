"""The quantization verb: ``quantize(model, config)`` returns a quantized copy; the config type picks the applier."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

import torch
from torch import nn

from lightning_distill.core.batch import logits_of, model_inputs
from lightning_distill.core.quantization import _bnb, _eager, _fx, _torchao
from lightning_distill.core.quantization._torch_ao import check_engine
from lightning_distill.core.quantization.config import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    QuantConfig,
    StaticQuantConfig,
    skipped,
)
from lightning_distill.core.quantization.report import REPORT_ATTRIBUTE, build_report, weight_layers

CONFIG_ATTRIBUTE = "quantization_config"
# PT2E graphs (engine="torchao") keep the shapes and dtypes of the inputs they were exported with, to rebuild them.
INPUT_SPEC_ATTRIBUTE = "quantization_input_spec"


def quantize(model: nn.Module, config: QuantConfig, calibration_data: Iterable[Any] | None = None) -> nn.Module:
    """Return a quantized copy of ``model``; ``model`` itself is never changed.

    Static quantization and QAT take one of two paths. A model built only from modules with eager int8 kernels (e.g.
    the MLPs) is quantized end to end by PyTorch's eager API. Any other model is traced with FX graph mode, which fuses
    ``Conv + BatchNorm (+ ReLU)`` and ``Linear (+ ReLU)`` and quantizes convolutions and linear layers of any
    symbolically traceable model (e.g. torchvision CNNs); the result is a ``torch.fx.GraphModule`` with the original
    layer names. A model that does not trace (Python control flow on tensor values, e.g. Hugging Face transformers)
    falls back to the eager path (static: each ``nn.Linear`` on its own; QAT: refused), and its report says why.

    Args:
        model: A float model (for ``QATConfig(step="convert")``: the model returned by the ``prepare`` step, trained).
        config: :class:`DynamicQuantConfig`, :class:`StaticQuantConfig`, :class:`QATConfig` or
            :class:`BitsAndBytesConfig`.
        calibration_data: Static quantization only: batches to observe activation ranges on, e.g. a data module's
            ``val_dataloader()``. A batch is a tensor of inputs, an ``(inputs, labels)`` pair, or a mapping of model
            keyword arguments (``labels`` and ``index`` entries are ignored). The first
            ``config.calibration_batches`` batches are used. ``QATConfig(engine="torchao", step="prepare")`` needs it
            too: its first batch is the example ``torch.export`` captures the forward with.

    Returns:
        The quantized model, in eval mode (train mode after ``QATConfig(step="prepare")``), with the config stored as
        its ``quantization_config`` attribute so :func:`save_quantized` can rebuild it, and a per-layer
        :class:`~lightning_distill.core.quantization.QuantizationReport` (which weight layers were quantized, which
        stayed
        float and why) as its ``quantization_report`` attribute.

    Raises:
        ValueError: static quantization without calibration data; QAT converted before any training step or of a model
            never prepared; a model with no layer the config applies to.
        RuntimeError: the config's backend is not compiled into this PyTorch build (the message names one that is).
        TypeError: ``config`` is not a quantization config.
    """
    applier = _APPLIERS.get(type(config))
    if applier is None:
        raise TypeError(
            f"config must be one of {', '.join(t.__name__ for t in _APPLIERS)}; got {type(config).__name__}"
        )
    if calibration_data is not None and not isinstance(config, StaticQuantConfig) and not _exports(config):
        raise ValueError(f"calibration_data is only used by StaticQuantConfig, not {type(config).__name__}")
    check_engine(config)
    if getattr(config, "engine", "eager") == "torchao":
        applier = _apply_torchao
    quantized, notes, untraceable = applier(model, config, calibration_data)
    if not (isinstance(config, QATConfig) and config.step == "prepare"):
        quantized.eval()  # layers created during quantization start in train mode
    setattr(quantized, CONFIG_ATTRIBUTE, config)
    setattr(quantized, REPORT_ATTRIBUTE, build_report(model, quantized, config, notes, untraceable))
    return quantized


def check_quantizable(model: nn.Module, config: QuantConfig) -> list[str]:
    """Check, without quantizing, that ``config`` can quantize ``model``; return the layers it would quantize.

    Meant to run before training (the post-fit callbacks call it in ``setup``): it raises for everything knowable
    from the model and the config alone.

    Raises:
        RuntimeError: the config's backend is not compiled into this PyTorch build.
        ImportError: ``BitsAndBytesConfig`` without the bitsandbytes package; ``engine="torchao"`` without torchao (or,
            for ``backend="qnnpack"``, without the XNNPACK quantizer of executorch).
        ValueError: no weight layer the config would quantize (the message lists each one and why), a QAT model with
            layers that have no int8 kernel, or a CUDA device asked for where there is none.
    """
    check_engine(config)
    if isinstance(config, BitsAndBytesConfig):
        _bnb._bnb()
        _check_bnb_device(config)
        targets = _bnb.targets(model, config.skip_modules)
    elif config.engine == "torchao":
        _torchao.check_installed(config)
        kinds = (nn.Linear,) if isinstance(config, DynamicQuantConfig) else (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
        patterns = getattr(config, "skip_modules", ())
        targets = [n for n, m in weight_layers(model) if isinstance(m, kinds) and not skipped(n, patterns)]
    else:
        _eager.check_backend(config.backend)
        if isinstance(config, (StaticQuantConfig, QATConfig)):
            targets = _graph_targets(model, config)
        else:
            targets = _eager.dynamic_targets(model, config.skip_modules)
    if not targets:
        layers = build_report(model, model, config).skipped
        listed = "; ".join(f"{layer.name} ({layer.layer}): {layer.reason}" for layer in layers[:8])
        raise ValueError(
            f"{type(config).__name__} would quantize no layer of {type(model).__name__}: "
            f"{listed or 'it has no weight layer'}{' ...' if len(layers) > 8 else ''}. Change skip_modules, or use "
            "ONNX Runtime int8 (OnnxExport with quantization) for models without nn.Linear layers"
        )
    return targets


# The quantized model, notes on whole-model decisions for its report, and why FX could not trace it (if it did not).
Applied = tuple[nn.Module, list[str], str | None]


def _graph_targets(model: nn.Module, config: StaticQuantConfig | QATConfig) -> list[str]:
    """The layers static quantization or QAT would convert, found by preparing (and converting) a copy."""
    qat = isinstance(config, QATConfig)
    if _eager.eager_problem(model) is None:  # the eager path takes models built only from eager-quantizable modules
        if qat or _eager.whole_model(model, config.skip_modules):
            return [name for name, _ in weight_layers(model)]
        return _eager.static_targets(model, config.skip_modules)
    try:
        prepared = _fx.prepare(copy.deepcopy(model), config, qat=qat)
    except _fx.NotTraceableError as error:
        if qat:
            _eager.check_qat_model(model, untraceable=error.reason)
        return _eager.static_targets(model, config.skip_modules)
    return build_report(model, prepared if qat else _fx.convert(prepared), config).quantized


def _apply_dynamic(model: nn.Module, config: DynamicQuantConfig, calibration_data: Any) -> Applied:
    check_quantizable(model, config)  # a model without nn.Linear would come back unchanged, "quantized"
    return _eager.dynamic(copy.deepcopy(model).eval(), config), [], None


def _apply_static(model: nn.Module, config: StaticQuantConfig, calibration_data: Iterable[Any] | None) -> Applied:
    if calibration_data is None:
        raise ValueError(
            "StaticQuantConfig needs calibration_data to observe activation ranges: pass e.g. "
            "calibration_data=datamodule.val_dataloader() (or use DynamicQuantConfig, which needs none)"
        )
    _eager.check_backend(config.backend)
    inputs = [model_inputs(b) for b in islice(calibration_data, config.calibration_batches)]
    if not inputs:
        raise ValueError("StaticQuantConfig: calibration_data yielded no batches; pass a non-empty loader")
    notes: list[str] = []
    if _eager.eager_problem(model) is None:  # built only from modules with eager int8 kernels, e.g. the MLPs
        if not _eager.whole_model(model, config.skip_modules):
            note = "layers excluded by skip_modules run in float, so each nn.Linear is quantized on its own"
            return _static(model, config, inputs, end_to_end=False), [note], None
        quantized = _static(model, config, inputs, end_to_end=True)
        failure = _end_to_end_failure(quantized, inputs[0])
        if failure is None:
            return quantized, ["the whole model runs in int8 between one quantize and one dequantize step"], None
        notes.append(failure)
    try:
        quantized = _fx_static(model, config, inputs)
    except _fx.NotTraceableError as error:
        notes.append(_why_layer_by_layer(model, config, error.reason))
        return _static(model, config, inputs, end_to_end=False), notes, error.reason
    notes.append(
        "FX graph mode: the traced forward was fused (Conv/Linear + BatchNorm + ReLU) and quantized, with "
        "quantize/dequantize steps only where it leaves int8"
    )
    return quantized, notes, None


def _end_to_end_failure(quantized: nn.Module, inputs: Any) -> str | None:
    try:
        with torch.inference_mode():
            logits_of(quantized, inputs)
    except (NotImplementedError, RuntimeError) as error:
        # The forward applies a float-only operation between layers (e.g. a residual sum).
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        return (
            "the eager int8 model failed on a calibration batch when run end to end (the forward applies a "
            f"float-only operation between layers? {first_line})"
        )
    return None


def _fx_static(model: nn.Module, config: StaticQuantConfig, inputs: list[Any]) -> nn.Module:
    observed = _fx.prepare(copy.deepcopy(model), config, _fx.example_inputs(inputs[0]))
    with torch.inference_mode():
        for batch in inputs:
            logits_of(observed, batch)
    return _fx.convert(observed)


def _why_layer_by_layer(model: nn.Module, config: StaticQuantConfig, untraceable: str) -> str:
    leaves = _eager.unquantizable_leaves(model)
    if leaves:
        cause = f"{', '.join(leaves[:3])}{' ...' if len(leaves) > 3 else ''} have no eager int8 kernel"
    else:
        cause = "the eager int8 model does not run end to end"
    return (
        f"FX graph mode cannot trace {type(model).__name__} ({untraceable}) and {cause}, so each nn.Linear is "
        "quantized on its own between a quantize and a dequantize step"
    )


def _static(model: nn.Module, config: StaticQuantConfig, inputs: list[Any], end_to_end: bool) -> nn.Module:
    observed = _eager.prepare_static(copy.deepcopy(model), config, end_to_end=end_to_end)
    with torch.inference_mode():
        for batch in inputs:
            logits_of(observed, batch)
    return _eager.convert(observed)


def _apply_qat(model: nn.Module, config: QATConfig, calibration_data: Any) -> Applied:
    prepared = _eager.is_qat_prepared(model)
    if config.step == "prepare":
        if prepared:
            raise ValueError(
                "model is already prepared for QAT; train it, then quantize it with QATConfig(step='convert')"
            )
        return _prepare_qat(copy.deepcopy(model), config), [], None
    if not prepared:
        raise ValueError(
            "QATConfig(step='convert') needs a model returned by quantize(model, QATConfig(step='prepare')) and trained"
        )
    unobserved = _eager.unobserved_fake_quant(model)
    if unobserved:
        raise ValueError(
            "QAT model converted before any training step: its fake-quantize observers have seen no data "
            f"({', '.join(unobserved[:3])}{' ...' if len(unobserved) > 3 else ''}); train the prepared model for at "
            "least one step (or use StaticQuantConfig with calibration data)"
        )
    converted = copy.deepcopy(model)
    _eager.set_engine(config.backend)
    _eager.remove_pruning(converted)
    if _fx.is_graph_module(converted):
        return _fx.convert(converted), [], None
    return _eager.convert(converted), [], None


def _prepare_qat(model: nn.Module, config: QATConfig) -> nn.Module:
    """The eager path in place for models it covers whole; otherwise FX graph mode, a new graph module."""
    if _eager.eager_problem(model) is None:
        return _eager.prepare_qat(model, config)
    try:
        prepared = _fx.prepare(model, config, qat=True)
    except _fx.NotTraceableError as error:
        _eager.check_qat_model(model, untraceable=error.reason)
        raise  # pragma: no cover (check_qat_model raises: the eager path was ruled out above)
    _fx.keep_float_state_names(prepared, model)
    return prepared


def prepare_qat_(model: nn.Module, config: QATConfig) -> nn.Module:
    """Prepare ``model`` for quantization-aware training, keeping its parameter objects, and return the result.

    Every ``nn.Parameter`` object survives, so optimizers and pruning masks that already hold the parameters keep
    working (the QAT callback relies on this), and ``state_dict`` keeps the float model's names, with the
    fake-quantize state as extra entries. A model built only from eager-quantizable modules (e.g. the MLPs) is
    prepared in place and returned. Any other model (e.g. a CNN) goes through FX graph mode and the result is a *new*
    ``torch.fx.GraphModule`` sharing those parameters (fused batch-norms appear under their convolution in
    ``named_parameters``; its ``state_dict`` and ``load_state_dict`` still use the float names): use the returned
    module in place of ``model``.

    Raises:
        ValueError: ``config.step`` is not ``prepare``, the model is already prepared, or it neither traces nor is
            built only from eager-quantizable modules.
    """
    if config.step != "prepare":
        raise ValueError(f"prepare_qat_ needs QATConfig(step='prepare'); got step={config.step!r}")
    if config.engine != "eager":
        raise ValueError(
            f"prepare_qat_ (and the QuantizationAwareTraining callback) run the eager engine only; got "
            f"engine={config.engine!r}: PT2E exports a new graph whose fake-quantize modules the callback's observer "
            "and batch-norm freezing do not drive. Use engine='eager' there, or quantize(model, "
            "QATConfig(engine='torchao'), calibration_data=...) in your own training loop"
        )
    check_engine(config)
    if _eager.is_qat_prepared(model):
        raise ValueError("model is already prepared for QAT; train it, then quantize it with QATConfig(step='convert')")
    prepared = _prepare_qat(model, config)
    setattr(prepared, CONFIG_ATTRIBUTE, config)
    return prepared


def set_qat_observers(model: nn.Module, enabled: bool) -> None:
    """Let the activation and weight ranges of a QAT-prepared model move with the data (``True``) or hold them.

    Observers update whenever the model runs, in eval mode too: hold them while validating or testing so
    evaluation data does not shift the ranges, and from the epoch where the ranges should freeze.
    """
    _eager.set_observers(model, enabled)


def freeze_qat_batchnorm(model: nn.Module) -> None:
    """Stop updating the batch-norm statistics fused into the layers of a QAT-prepared model."""
    _eager.freeze_bn_stats(model)


def _exports(config: QuantConfig) -> bool:
    return isinstance(config, QATConfig) and config.engine == "torchao" and config.step == "prepare"


def _calibration_inputs(config: StaticQuantConfig | QATConfig, calibration_data: Iterable[Any] | None) -> list[Any]:
    name = type(config).__name__
    if calibration_data is None:
        need = "to observe activation ranges" if isinstance(config, StaticQuantConfig) else "as torch.export's example"
        raise ValueError(
            f"{name}(engine={config.engine!r}) needs calibration_data {need}: pass e.g. "
            "calibration_data=datamodule.val_dataloader() (or use DynamicQuantConfig, which needs none)"
        )
    count = config.calibration_batches if isinstance(config, StaticQuantConfig) else 1
    inputs = [model_inputs(b) for b in islice(calibration_data, count)]
    if not inputs:
        raise ValueError(f"{name}: calibration_data yielded no batches; pass a non-empty loader")
    return inputs


def _apply_torchao(model: nn.Module, config: QuantConfig, calibration_data: Iterable[Any] | None) -> Applied:
    """``quantize_`` for dynamic int8; PT2E (export, prepare, calibrate or train, convert) for static int8 and QAT."""
    if isinstance(config, DynamicQuantConfig):
        check_quantizable(model, config)
        note = "torchao quantize_, Int8DynamicActivationInt8WeightConfig (kernels follow the device; backend unused)"
        return _torchao.dynamic(copy.deepcopy(model).eval(), config), [note], None
    if isinstance(config, QATConfig) and config.step == "convert":
        return _convert_torchao_qat(model, config), [], None
    check_quantizable(model, config)
    inputs = _calibration_inputs(config, calibration_data)
    prepared = _torchao.prepare(copy.deepcopy(model), config, inputs[0])
    setattr(prepared, INPUT_SPEC_ATTRIBUTE, _torchao.input_spec(inputs[0]))
    note = f"torchao PT2E ({'X86InductorQuantizer' if config.backend in _torchao.X86_BACKENDS else 'XNNPACKQuantizer'})"
    if isinstance(config, QATConfig):
        return prepared, [f"{note}: fake-quantized; train it, then convert with QATConfig(step='convert')"], None
    with torch.no_grad():
        for batch in inputs:
            logits_of(prepared, batch)
    converted = _torchao.convert(prepared)
    setattr(converted, INPUT_SPEC_ATTRIBUTE, getattr(prepared, INPUT_SPEC_ATTRIBUTE))
    return converted, [f"{note}: exported graph with int8 weights and quantize/dequantize steps around them"], None


def _convert_torchao_qat(model: nn.Module, config: QATConfig) -> nn.Module:
    if not _torchao.is_qat_prepared(model):
        raise ValueError(
            "QATConfig(engine='torchao', step='convert') needs a model returned by quantize(model, "
            "QATConfig(engine='torchao', step='prepare'), calibration_data=...) and trained"
        )
    unobserved = _torchao.unobserved_fake_quant(model)
    if unobserved:
        raise ValueError(
            "QAT model converted before any training step: its fake-quantize observers have seen no data "
            f"({', '.join(unobserved[:3])}{' ...' if len(unobserved) > 3 else ''}); train it for at least one step"
        )
    converted = _torchao.convert(copy.deepcopy(model))
    setattr(converted, INPUT_SPEC_ATTRIBUTE, getattr(model, INPUT_SPEC_ATTRIBUTE, None))
    return converted


def _check_bnb_device(config: BitsAndBytesConfig) -> None:
    if config.device != "cpu" and not torch.cuda.is_available():
        raise ValueError(
            f"BitsAndBytesConfig(device={config.device!r}) but torch sees no CUDA device; use device='cpu' here"
        )


def _apply_bnb(model: nn.Module, config: BitsAndBytesConfig, calibration_data: Any) -> Applied:
    _check_bnb_device(config)
    quantized = copy.deepcopy(model).eval()
    _bnb.replace_linears(quantized, config, device=config.device)  # each layer quantized on its device
    return quantized.to(config.device), [], None


_APPLIERS: dict[type, Callable[[nn.Module, Any, Any], Applied]] = {
    DynamicQuantConfig: _apply_dynamic,
    StaticQuantConfig: _apply_static,
    QATConfig: _apply_qat,
    BitsAndBytesConfig: _apply_bnb,
}
