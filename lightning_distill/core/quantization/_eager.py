"""Every call into PyTorch's eager ``torch.ao.quantization`` API lives in this file.

That API is deprecated in favour of torchao; keeping it behind these few functions means a later move touches one
place. It is imported inside the functions that use it (through ``_torch_ao.load``), so this file imports on a
PyTorch that no longer ships it. All functions work in place on a model the caller has already copied.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise
from types import ModuleType
from typing import Any

import torch
from torch import nn

from lightning_distill.core.cpu_features import has_int8_dot_product, is_x86
from lightning_distill.core.quantization._torch_ao import load
from lightning_distill.core.quantization.config import (
    BACKENDS,
    DynamicQuantConfig,
    QATConfig,
    StaticQuantConfig,
    skipped,
)

# Leaf modules with eager int8 kernels (or that pass quantized tensors through unchanged); QuantStub and DeQuantStub
# (torch.ao.quantization) are recognised by name, so that the check runs without importing it.
_QUANTIZABLE = (nn.Linear, nn.ReLU, nn.Flatten, nn.Dropout, nn.Identity, nn.BatchNorm1d)
_STUB_TYPES = ("QuantStub", "DeQuantStub")
_ALTERNATIVE = {"qnnpack": "x86", "fbgemm": "x86", "x86": "fbgemm", "onednn": "x86"}


def tq(config_name: str = "StaticQuantConfig") -> ModuleType:
    """``torch.ao.quantization``, or a :class:`TorchAoUnavailableError` naming ``config_name``'s torchao equivalent."""
    return load("torch.ao.quantization", config_name)


def supported_engines() -> list[str]:
    """Quantized engines compiled into this PyTorch build."""
    return list(torch.backends.quantized.supported_engines)


def check_backend(backend: str) -> None:
    """Raise if ``backend`` is unknown or not compiled into this PyTorch build, naming one that is."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown quantization backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    available = [e for e in supported_engines() if e != "none"]
    if backend not in available:
        preferred = _ALTERNATIVE.get(backend)
        alternative = preferred if preferred in available else (available[0] if available else None)
        hint = (
            f"use backend={alternative!r} instead"
            if alternative
            else "this build has no quantized engine: use ONNX Runtime int8 (export.quantize_onnx) instead"
        )
        raise RuntimeError(
            f"quantization backend {backend!r} is not available in this PyTorch build "
            f"(available: {', '.join(available) or 'none'}); {hint}"
        )


def set_engine(backend: str) -> None:
    """Select the global quantized engine; int8 modules must run under the engine that packed their weights."""
    check_backend(backend)
    torch.backends.quantized.engine = backend


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def unquantizable_leaves(model: nn.Module) -> list[str]:
    """Names (and types) of leaf modules without an eager int8 kernel."""
    found = []
    for name, module in model.named_modules():
        quantizable = isinstance(module, _QUANTIZABLE) or type(module).__name__ in _STUB_TYPES
        if not list(module.children()) and not quantizable:
            found.append(f"{name} ({type(module).__name__})")
    return found


def _fusion_groups(model: nn.Module, patterns: tuple[str, ...]) -> list[list[str]]:
    """``[linear, relu]`` and ``[linear, batchnorm1d]`` neighbours inside ``nn.Sequential`` containers."""
    groups = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Sequential):
            continue
        children = list(module.named_children())
        for (first_name, first), (second_name, second) in pairwise(children):
            full = f"{name}.{first_name}" if name else first_name
            if (
                type(first) is nn.Linear
                and isinstance(second, (nn.ReLU, nn.BatchNorm1d))
                and not skipped(full, patterns)
            ):
                groups.append([full, f"{name}.{second_name}" if name else second_name])
    return groups


def _fuse(model: nn.Module, patterns: tuple[str, ...], qat: bool) -> None:
    groups = _fusion_groups(model, patterns)
    if groups:
        fuse = tq().fuse_modules_qat if qat else tq().fuse_modules
        fuse(model, groups, inplace=True)


# Whole-model quantization keeps every parameter name: the quantize/dequantize stubs are attached as extra children
# and called from hooks instead of wrapping the model in a container that would prefix all names.
def _quantize_input(module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (module.quant_stub(args[0]), *args[1:])


def _dequantize_output(module: nn.Module, args: tuple[Any, ...], output: Any) -> Any:
    return module.dequant_stub(output)


_STUBS = ("quant_stub", "dequant_stub")


class StubbedSequential(nn.Sequential):
    """A top-level ``nn.Sequential`` carrying the whole-model quantize/dequantize stubs as extra children.

    ``nn.Sequential.forward`` calls every child in turn, so stubs added as children would run a second time after the
    last layer (quantizing the int8 output again fails at the first forward of the converted model); this forward
    runs the original layers only and leaves the stubs to the hooks, like in any other model.
    """

    def forward(self, input: Any) -> Any:
        for name, module in self._modules.items():
            if name not in _STUBS:
                input = module(input)
        return input


def _attach_stubs(model: nn.Module) -> None:
    if type(model) is nn.Sequential:  # subclasses are refused by check_qat_model and quantized layer by layer
        model.__class__ = StubbedSequential  # same parameters, names and children; only the forward changes
    model.add_module("quant_stub", tq().QuantStub())
    model.add_module("dequant_stub", tq().DeQuantStub())
    model.register_forward_pre_hook(_quantize_input)
    model.register_forward_hook(_dequantize_output)


def _wrap_layers(model: nn.Module, qconfig: Any, patterns: tuple[str, ...]) -> int:
    """Put each (fused) ``Linear`` that is not skipped between its own quantize and dequantize steps."""
    nni = load("torch.ao.nn.intrinsic", "StaticQuantConfig")
    targets: list[str] = []
    for name, module in model.named_modules():
        inside_target = any(name.startswith(t + ".") for t in targets)  # the Linear inside a fused LinearReLU
        if name and type(module) in (nn.Linear, nni.LinearReLU) and not inside_target and not skipped(name, patterns):
            targets.append(name)
    for name in targets:
        parent_name, _, child_name = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        wrapper = tq().QuantWrapper(getattr(parent, child_name))
        wrapper.qconfig = qconfig
        setattr(parent, child_name, wrapper)
    return len(targets)


def whole_model(model: nn.Module, patterns: tuple[str, ...]) -> bool:
    """Whether the model can run end to end in int8 (only quantizable leaves, nothing skipped)."""
    plain_forward = not isinstance(model, nn.Sequential) or type(model) in (nn.Sequential, StubbedSequential)
    return not patterns and not unquantizable_leaves(model) and plain_forward


def dynamic_targets(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Names of the layers dynamic quantization is asked to convert: every ``nn.Linear`` not matched by ``patterns``."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear) and not skipped(name, patterns)]


def static_targets(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Names of the float ``nn.Linear`` layers static quantization converts one by one (when not end to end)."""
    return [name for name, m in model.named_modules() if type(m) is nn.Linear and name and not skipped(name, patterns)]


def dynamic(model: nn.Module, config: DynamicQuantConfig) -> nn.Module:
    ao = tq("DynamicQuantConfig")
    set_engine(config.backend)
    qconfig = ao.default_dynamic_qconfig if config.dtype == "qint8" else ao.float16_dynamic_qconfig
    spec = {name: qconfig for name in dynamic_targets(model, config.skip_modules)}
    dtype = torch.qint8 if config.dtype == "qint8" else torch.float16
    with _quiet():
        return ao.quantize_dynamic(model, qconfig_spec=spec, dtype=dtype, inplace=True)


def default_qconfig(backend: str, qat: bool = False) -> Any:
    """PyTorch's default (QAT: fake-quantized) qconfig of ``backend``, with 7-bit activations for oneDNN on an x86 CPU
    without an int8 dot-product instruction.

    PyTorch's ``x86`` and ``fbgemm`` defaults always keep activations to 7 bits (``reduce_range``); its ``onednn``
    default uses all 8, which is right with VNNI or AMX. Without them (AVX2 or AVX-512 alone) oneDNN multiplies with
    ``VPMADDUBSW``, whose 16-bit sums of uint8 x int8 products saturate: on an AVX2 AMD EPYC an MNIST MLP's int8
    predictions agreed with the float model's on 96.8% of the test images with 8 bits, under the 97% that
    ``tests/core/quantization/test_quantize.py`` asks of every int8 backend, and passed with 7.
    """
    ao = tq("QATConfig" if qat else "StaticQuantConfig")
    return for_this_cpu(backend, ao.get_default_qat_qconfig(backend) if qat else ao.get_default_qconfig(backend))


def for_this_cpu(backend: str, qconfig: Any) -> Any:
    """``qconfig`` with 7-bit activations where :func:`default_qconfig` needs them; else ``qconfig`` itself."""
    if backend == "onednn" and is_x86() and not has_int8_dot_product():
        return tq().QConfig(activation=qconfig.activation.with_args(reduce_range=True), weight=qconfig.weight)
    return qconfig


def prepare_static(model: nn.Module, config: StaticQuantConfig, end_to_end: bool) -> nn.Module:
    """Fuse, attach observers and return the model ready for calibration forwards.

    With ``end_to_end`` the whole model runs in int8 between one quantize and one dequantize step; otherwise each
    ``Linear`` gets its own pair.
    """
    ao = tq("StaticQuantConfig")
    set_engine(config.backend)
    model.eval()
    qconfig = default_qconfig(config.backend)
    _fuse(model, config.skip_modules, qat=False)
    if end_to_end:
        _attach_stubs(model)
        model.qconfig = qconfig
    elif _wrap_layers(model, qconfig, config.skip_modules) == 0:
        raise ValueError("StaticQuantConfig found no nn.Linear layer to quantize (all skipped or none in the model)")
    with _quiet():
        ao.prepare(model, inplace=True)
    return model


def convert(model: nn.Module) -> nn.Module:
    model.eval()
    with _quiet():
        tq().convert(model, inplace=True)
    return model


def eager_problem(model: nn.Module) -> str | None:
    """Why the eager path cannot quantize ``model`` as a whole (``None``: every leaf has an eager int8 kernel and the
    forward is plain); such models go through FX graph mode instead."""
    offending = unquantizable_leaves(model)
    if offending:
        return f"it has {', '.join(offending[:5])}{' ...' if len(offending) > 5 else ''}"
    if isinstance(model, nn.Sequential) and type(model) not in (nn.Sequential, StubbedSequential):
        return (
            f"it is a {type(model).__name__} (a subclass of nn.Sequential), whose forward would run the added "
            "quantize/dequantize steps too"
        )
    return None


def check_qat_model(model: nn.Module, untraceable: str | None = None) -> None:
    """Raise unless the eager path can prepare the model (built only from quantizable modules, plain forward).

    Args:
        model: The float model.
        untraceable: Why FX graph mode could not trace it (the other way to prepare it), for the message.
    """
    problem = eager_problem(model)
    if problem is None:
        return
    traced = f", and FX graph mode cannot trace it ({untraceable})" if untraceable else ""
    raise ValueError(
        "QATConfig needs a model built only from quantizable modules (Linear, ReLU, Flatten, Dropout, BatchNorm1d) "
        f"or a symbolically traceable one; for {type(model).__name__}, {problem}{traced}. Make its forward traceable "
        "(no Python control flow on tensor values), wrap a Sequential subclass in a plain nn.Module, or use "
        "DynamicQuantConfig or ONNX Runtime int8 (OnnxExport with quantization) for such models."
    )


def prepare_qat(model: nn.Module, config: QATConfig) -> nn.Module:
    """Fuse and insert fake quantization for training; every float parameter keeps its name."""
    ao = tq("QATConfig")
    set_engine(config.backend)
    check_qat_model(model)
    model.train()
    _fuse(model, (), qat=True)
    _attach_stubs(model)
    model.qconfig = default_qconfig(config.backend, qat=True)
    with _quiet():
        ao.prepare_qat(model, inplace=True)
    return model


def _is_fake_quantize(module: nn.Module) -> bool:
    """A ``torch.ao`` fake-quantize module, found by its class's bases so that no import of ``torch.ao`` is needed."""
    return any(c.__name__ == "FakeQuantizeBase" and c.__module__.startswith("torch.ao.") for c in type(module).__mro__)


def is_qat_prepared(model: nn.Module) -> bool:
    return any(_is_fake_quantize(m) for m in model.modules())


def unobserved_fake_quant(model: nn.Module) -> list[str]:
    """Names of fake-quantize modules whose observers have not seen a single batch."""
    names = []
    for name, module in model.named_modules():
        observer = getattr(module, "activation_post_process", None)
        if _is_fake_quantize(module) and observer is not None:
            min_val = getattr(observer, "min_val", None)
            if min_val is not None and (min_val.numel() == 0 or bool(torch.isinf(min_val).all())):
                names.append(name)
    return names


def set_observers(model: nn.Module, enabled: bool) -> None:
    ao = tq("QATConfig")
    model.apply(ao.enable_observer if enabled else ao.disable_observer)


def freeze_bn_stats(model: nn.Module) -> None:
    model.apply(load("torch.ao.nn.intrinsic.qat", "QATConfig").freeze_bn_stats)


def remove_pruning(model: nn.Module) -> None:
    """Make ``torch.nn.utils.prune`` masks permanent, so conversion sees plain weights."""
    from torch.nn.utils import prune

    for module in model.modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                prune.remove(module, hook._tensor_name)
