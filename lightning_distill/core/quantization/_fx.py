"""Every call into PyTorch's FX graph mode quantization (``torch.ao.quantization.quantize_fx``) lives in this file.

FX graph mode traces the model's forward into a graph, so it sees the operations between layers (residual sums,
pooling, flattening) that the eager API cannot: it fuses ``Conv + BatchNorm (+ ReLU)`` and ``Linear (+ ReLU)``,
quantizes convolutions and linear layers and puts quantize / dequantize steps only where the graph leaves int8. It
needs a *symbolically traceable* model (no Python control flow on tensor values); :class:`NotTraceable` says why a
model is not. Like the eager API it is deprecated in favour of torchao, so its calls stay behind these functions,
its import inside them (``_eager.tq`` / ``_torch_ao.load``: this file imports on a PyTorch without it) and its
warnings behind ``_quiet``. All functions work on a model the caller has already copied.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule

from lightning_distill.core.quantization._eager import _is_fake_quantize, _quiet, for_this_cpu, set_engine, tq
from lightning_distill.core.quantization._torch_ao import load
from lightning_distill.core.quantization.config import QATConfig, StaticQuantConfig, skipped

_FLOAT_NAMES = "_float_state_names"


class NotTraceableError(ValueError):
    """The model's forward cannot be symbolically traced; ``reason`` is the tracer's first line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _quantize_fx(config_name: str) -> ModuleType:
    return load("torch.ao.quantization.quantize_fx", config_name)


def is_graph_module(model: nn.Module) -> bool:
    return isinstance(model, GraphModule)


def _mapping(model: nn.Module, config: StaticQuantConfig | QATConfig, qat: bool) -> Any:
    backend = config.backend
    ao = tq(type(config).__name__)
    mapping = ao.get_default_qat_qconfig_mapping(backend) if qat else ao.get_default_qconfig_mapping(backend)
    # PyTorch's own, but for oneDNN without VNNI (7-bit activations): the global qconfig and every op type that uses it
    theirs = mapping.global_qconfig
    ours = for_this_cpu(backend, theirs)
    if ours is not theirs:
        mapping.set_global(ours)
        for op, qconfig in list(mapping.object_type_qconfigs.items()):
            if qconfig is theirs:
                mapping.set_object_type(op, ours)
    for name, _ in model.named_modules():
        if name and skipped(name, getattr(config, "skip_modules", ())):
            mapping.set_module_name(name, None)  # None: this module (and what is fused into it) stays float
    return mapping


def prepare(
    model: nn.Module, config: StaticQuantConfig | QATConfig, example_inputs: tuple[Any, ...] = (), qat: bool = False
) -> GraphModule:
    """Trace, fuse and insert observers (``qat``: fake quantization) into ``model``; return the new graph module.

    The result shares the parameter objects of ``model`` (fused batch-norms move under their convolution, e.g.
    ``bn1.weight`` becomes ``conv1.bn.weight``).

    Raises:
        NotTraceableError: the forward cannot be symbolically traced.
    """
    quantize_fx = _quantize_fx(type(config).__name__)
    set_engine(config.backend)
    model.train(qat)
    prepare_fn = quantize_fx.prepare_qat_fx if qat else quantize_fx.prepare_fx
    try:
        with _quiet():
            return prepare_fn(model, _mapping(model, config, qat), example_inputs)
    except Exception as error:  # the tracer raises TraceError, TypeError, ValueError, ... depending on the forward
        first_line = (str(error).strip().splitlines() or [""])[0][:200]
        raise NotTraceableError(f"{type(error).__name__}: {first_line}") from error


def convert(prepared: GraphModule) -> GraphModule:
    """Replace observed layers by int8 ones; observers without data give placeholder scales (a skeleton to load)."""
    prepared.eval()
    with _quiet():
        return _quantize_fx("StaticQuantConfig").convert_fx(prepared)


def is_qat_prepared(model: nn.Module) -> bool:
    return is_graph_module(model) and any(_is_fake_quantize(m) for m in model.modules())


def skeleton(model: nn.Module, config: StaticQuantConfig | QATConfig) -> GraphModule:
    """The converted structure of ``model`` under ``config`` without calibration: a saved state dict fills it in."""
    return convert(prepare(model, config, qat=isinstance(config, QATConfig)))


# --- QAT models keep the float model's state-dict names ---------------------------------------------------------
# A QAT-prepared graph module moves each fused batch-norm under its convolution. Checkpoints of a QAT run must still
# load into the float model (and float checkpoints into the prepared one), so the prepared module writes and reads
# its state dict under the float names; only the fake-quantize entries are new.


def keep_float_state_names(prepared: GraphModule, float_model: nn.Module) -> None:
    """Make ``prepared.state_dict()`` / ``load_state_dict`` use the names of ``float_model`` for shared tensors."""
    float_names = {id(t): n for n, t in (*float_model.named_parameters(), *float_model.named_buffers())}
    renamed = {}
    for name, tensor in (*prepared.named_parameters(), *prepared.named_buffers()):
        float_name = float_names.get(id(tensor))
        if float_name is not None and float_name != name:
            renamed[name] = float_name
    setattr(prepared, _FLOAT_NAMES, renamed)
    prepared.register_state_dict_post_hook(_to_float_names)
    prepared.register_load_state_dict_pre_hook(_from_float_names)


def _to_float_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, local_metadata: Any) -> None:
    for name, float_name in getattr(module, _FLOAT_NAMES, {}).items():
        if prefix + name in state_dict:
            state_dict[prefix + float_name] = state_dict.pop(prefix + name)


def _from_float_names(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    for name, float_name in getattr(module, _FLOAT_NAMES, {}).items():
        if prefix + float_name in state_dict:
            state_dict[prefix + name] = state_dict.pop(prefix + float_name)


def example_inputs(inputs: Any) -> tuple[Any, ...]:
    """Positional example inputs for ``prepare`` from a calibration batch's model inputs (none for keyword inputs)."""
    return (inputs,) if isinstance(inputs, torch.Tensor) else ()
