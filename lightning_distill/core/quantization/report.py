"""What a quantize call did to each weight layer: quantized, or left in float and why.

Every model returned by :func:`~lightning_distill.core.quantization.quantize` (and by
:func:`~lightning_distill.core.quantization.load_quantized`) carries a :class:`QuantizationReport` as its
``quantization_report`` attribute. A *weight layer* is a module owning a weight matrix or kernel (a ``weight``
parameter of two or more dimensions: ``Linear``, ``Conv*d``, ``Embedding``, ...); norms and biases are not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from fnmatch import fnmatch
from typing import Any, Literal

from torch import Tensor, nn
from torch.fx import GraphModule

REPORT_ATTRIBUTE = "quantization_report"

Status = Literal["quantized", "fake-quantized", "float"]

# Where quantized layers come from: PyTorch's int8 / fake-quantized modules and bitsandbytes.
_QUANTIZED_PACKAGES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized", "bitsandbytes")
_FAKE_QUANTIZED_PACKAGES = ("torch.ao.nn.qat", "torch.ao.nn.intrinsic.qat")

# What each method converts, in the words of a "not supported" reason.
_METHODS = {
    "DynamicQuantConfig": "dynamic quantization (it converts nn.Linear layers)",
    "StaticQuantConfig": "static quantization of this model (it converts nn.Linear layers, each on its own)",
    "QATConfig": "quantization-aware training",
    "BitsAndBytesConfig": "bitsandbytes (it replaces plain nn.Linear layers)",
}


@dataclass(frozen=True)
class LayerOutcome:
    """One weight layer: its name, its float type, what it became, and why it stayed float (if it did)."""

    name: str
    layer: str
    status: Status
    result: str
    reason: str = ""


@dataclass(frozen=True)
class QuantizationReport:
    """The per-layer outcome of one quantize call.

    Attributes:
        method: The config's class name, e.g. ``DynamicQuantConfig``.
        layers: One entry per weight layer of the float model, in module order.
        notes: Decisions about the model as a whole (e.g. quantized layer by layer, and why).
        untraceable: Why FX graph mode could not trace the model (the eager path was used instead); ``None`` when
            it traced or was not needed.
    """

    method: str
    layers: tuple[LayerOutcome, ...]
    notes: tuple[str, ...] = field(default=())
    untraceable: str | None = None

    @property
    def quantized(self) -> list[str]:
        """Names of the layers now int8 (or fake-quantized, after a QAT prepare step)."""
        return [layer.name for layer in self.layers if layer.status != "float"]

    @property
    def skipped(self) -> list[LayerOutcome]:
        """The layers left in float, each with its reason."""
        return [layer for layer in self.layers if layer.status == "float"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON: method, counts, notes and one entry per layer."""
        return {
            "method": self.method,
            "num_weight_layers": len(self.layers),
            "num_quantized": len(self.quantized),
            "notes": list(self.notes),
            "untraceable": self.untraceable,
            "layers": [asdict(layer) for layer in self.layers],
        }

    def summary(self) -> str:
        """A few readable lines: the counts, the notes, then one line per layer."""
        lines = [f"{self.method}: {len(self.quantized)} of {len(self.layers)} weight layers quantized"]
        lines += [f"  note: {note}" for note in self.notes]
        width = max((len(layer.name) for layer in self.layers), default=0)
        for layer in self.layers:
            if layer.status == "float":
                lines.append(f"  float      {layer.name:<{width}}  {layer.layer}: {layer.reason}")
            else:
                lines.append(f"  {layer.status:<10} {layer.name:<{width}}  {layer.layer} -> {layer.result}")
        return "\n".join(lines)


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(name, module)`` of every module owning a weight of two or more dimensions (a pruned one's too)."""
    found = []
    for name, module in model.named_modules():
        weight = module._parameters.get("weight", module._parameters.get("weight_orig"))
        if isinstance(weight, Tensor) and weight.dim() >= 2:
            found.append((name, module))
    return found


def build_report(
    float_model: nn.Module,
    quantized: nn.Module,
    config: Any,
    notes: tuple[str, ...] | list[str] = (),
    untraceable: str | None = None,
) -> QuantizationReport:
    """Compare each weight layer of ``float_model`` with the module at the same name in ``quantized``.

    FX graph mode keeps the original module names (a fused ``Conv + BatchNorm + ReLU`` sits at the convolution's
    name), so converted layers are found by name in an FX graph module too.

    Args:
        float_model: The model before quantization.
        quantized: The model after it (an FX graph module, or the eager model with layers swapped).
        config: The quantization config.
        notes: Decisions about the model as a whole.
        untraceable: Why FX graph mode could not trace the model, when the eager path was used instead.
    """
    if getattr(config, "engine", "eager") == "torchao":
        outcomes = [_torchao_outcome(name, module, quantized, config) for name, module in weight_layers(float_model)]
        return QuantizationReport(type(config).__name__, tuple(outcomes), tuple(notes), untraceable)
    outcomes = []
    graph = isinstance(quantized, GraphModule)
    for name, module in weight_layers(float_model):
        after = _module_at(quantized, name)
        status = _status(after)
        outcomes.append(
            LayerOutcome(
                name=name or "(the model itself)",
                layer=type(module).__name__,
                status=status,
                result=after._get_name() if after is not None else "(removed)",
                reason=_float_reason(name, module, config, after, graph, untraceable) if status == "float" else "",
            )
        )
    return QuantizationReport(
        method=type(config).__name__, layers=tuple(outcomes), notes=tuple(notes), untraceable=untraceable
    )


def _module_at(model: nn.Module, name: str) -> nn.Module | None:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return None
    # Static per-layer quantization puts a converted layer inside a QuantWrapper (quant, dequant, module).
    inner = module._modules.get("module") if type(module).__name__ == "QuantWrapper" else None
    return inner if inner is not None else module


def _status(module: nn.Module | None) -> Status:
    package = type(module).__module__ if module is not None else ""
    if package.startswith(_QUANTIZED_PACKAGES):
        return "quantized"
    if package.startswith(_FAKE_QUANTIZED_PACKAGES):
        return "fake-quantized"
    return "float"


def _float_reason(
    name: str, module: nn.Module, config: Any, after: nn.Module | None, graph: bool, untraceable: str | None
) -> str:
    matched = next((p for p in getattr(config, "skip_modules", ()) if fnmatch(name, p)), None)
    if matched is not None:
        return f"excluded by skip_modules pattern {matched!r}"
    method_name = type(config).__name__
    if graph:
        if after is None:
            return "not called by the model's forward, so FX tracing dropped it"
        method = "quantization-aware training" if method_name == "QATConfig" else "static quantization"
        return f"{type(module).__name__} has no int8 kernel in FX graph mode {method} (default qconfig mapping)"
    if untraceable and not isinstance(module, nn.Linear):
        return (
            f"{type(module).__name__} not quantized: the model is not symbolically traceable ({untraceable}), so the "
            "eager path quantized only its nn.Linear layers, each on its own"
        )
    method = _METHODS.get(type(config).__name__, type(config).__name__)
    return f"{type(module).__name__} not supported by {method}"


def _torchao_outcome(name: str, module: nn.Module, quantized: nn.Module, config: Any) -> LayerOutcome:
    """One layer after torchao: an int8 tensor-subclass weight (``quantize_``), or int8 in the PT2E graph."""
    from lightning_distill.core.quantization import _torchao

    layer = type(module).__name__
    matched = next((p for p in getattr(config, "skip_modules", ()) if fnmatch(name, p)), None)
    reason = f"excluded by skip_modules pattern {matched!r}" if matched is not None else ""
    if not isinstance(quantized, GraphModule):  # quantize_ keeps the modules and swaps their weights
        weight = getattr(_module_at(quantized, name), "weight", None)
        if _torchao.is_torchao_weight(weight):
            return LayerOutcome(name, layer, "quantized", f"{layer} with a {type(weight).__name__} weight")
        reason = reason or f"{layer} not supported: Int8DynamicActivationInt8WeightConfig converts nn.Linear layers"
        return LayerOutcome(name, layer, "float", layer, reason)
    states = _torchao.graph_layer_states(quantized)
    if states.get(name):
        fake = _torchao.is_qat_prepared(quantized)
        status: Status = "fake-quantized" if fake else "quantized"
        return LayerOutcome(name, layer, status, "fake-quantized op in the PT2E graph" if fake else "int8 PT2E op")
    if not reason:
        reason = (
            f"{layer} left unannotated by the PT2E quantizer (it quantizes convolution and linear ops)"
            if name in states
            else f"no convolution or linear op of the exported graph uses this {layer} (e.g. an embedding lookup, "
            "or a layer the forward never calls), so the PT2E quantizer left it float"
        )
    return LayerOutcome(name, layer, "float", "(float op in the PT2E graph)", reason)
