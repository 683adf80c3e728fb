"""Every call into torchao lives in this file: ``quantize_`` for dynamic int8, PT2E for static int8 and QAT.

torchao is PyTorch's maintained quantization stack (``torch.ao.quantization``, behind ``_eager.py`` and ``_fx.py``,
is deprecated). Dynamic int8 swaps each ``nn.Linear`` weight for a torchao int8 tensor subclass in place, so the
model keeps its structure. Static int8 and QAT go through PT2E: ``torch.export`` captures the forward as an ATen
graph, the backend's quantizer annotates it, ``prepare_pt2e`` / ``prepare_qat_pt2e`` insert observers, and
``convert_pt2e`` folds int8 weights into the graph with quantize / dequantize steps around them, the pattern that
``torch.compile`` lowers to int8 kernels. All functions work on a model the caller has already copied.
"""

from __future__ import annotations

import types
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule

from lightning_distill.core._optional import require
from lightning_distill.core.quantization._torch_ao import check_pt2e
from lightning_distill.core.quantization.config import DynamicQuantConfig, QATConfig, StaticQuantConfig, skipped

# Backend -> the PT2E quantizer that targets it.
X86_BACKENDS = ("x86", "fbgemm", "onednn")
_XNNPACK_MODULE = "executorch.backends.xnnpack.quantizer.xnnpack_quantizer"
# The graph's activation quantize / dequantize steps hold their scale and zero point as plain numbers, not tensors.
_PER_TENSOR = ("quantize_per_tensor.default", "dequantize_per_tensor.default")
_WEIGHT_OPS = ("aten.linear.", "aten.conv1d.", "aten.conv2d.", "aten.conv3d.", "aten.conv_transpose")


@contextmanager
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "must run observer before calling calculate_qparams" on skeletons, ...
        yield


def check_installed(config: Any) -> None:
    """Raise ImportError, before any work, if torchao or the backend's quantizer is not installed."""
    require("torchao", f"{type(config).__name__}(engine='torchao')")
    if not isinstance(config, DynamicQuantConfig):
        check_pt2e(type(config).__name__)
        _quantizer(config)


def _quantizer(config: StaticQuantConfig | QATConfig, skipped_names: tuple[str, ...] = ()) -> Any:
    """The PT2E quantizer for ``config.backend``, with the modules named in ``skipped_names`` left float."""
    qat = isinstance(config, QATConfig)
    if config.backend in X86_BACKENDS:
        x86 = require("torchao.quantization.pt2e.quantizer.x86_inductor_quantizer", "engine='torchao'")
        quantizer = x86.X86InductorQuantizer().set_global(x86.get_default_x86_inductor_quantization_config(is_qat=qat))
    else:  # qnnpack: ARM and mobile, the XNNPACK quantizer ships with executorch, not with torchao
        try:
            xnnpack = __import__(_XNNPACK_MODULE, fromlist=["XNNPACKQuantizer"])
        except ImportError as error:
            raise ImportError(
                f"{type(config).__name__}(engine='torchao', backend={config.backend!r}) needs the XNNPACK quantizer "
                f"({_XNNPACK_MODULE}), which ships with the executorch package, not installed here: install "
                "executorch, or use backend='x86' (X86InductorQuantizer) or engine='eager' (qnnpack kernels)"
            ) from error
        quantizer = xnnpack.XNNPACKQuantizer().set_global(
            xnnpack.get_symmetric_quantization_config(is_per_channel=True, is_qat=qat)
        )
    # The quantizers take exact module names (None: left float); X86's setter and XNNPACK's are named differently.
    skip = getattr(quantizer, "set_module_name_qconfig", None) or quantizer.set_module_name
    for name in skipped_names:
        skip(name, None)
    return quantizer


# --- dynamic int8: quantize_ -------------------------------------------------------------------------------------


def dynamic(model: nn.Module, config: DynamicQuantConfig) -> nn.Module:
    """Swap the weight of every ``nn.Linear`` not matched by ``skip_modules`` for a torchao int8 tensor, in place."""
    quantization = require("torchao.quantization", "DynamicQuantConfig(engine='torchao')")

    def wanted(module: nn.Module, name: str) -> bool:
        return isinstance(module, nn.Linear) and not skipped(name, config.skip_modules)

    with _quiet():
        quantization.quantize_(model, quantization.Int8DynamicActivationInt8WeightConfig(), filter_fn=wanted)
    return model


def is_torchao_weight(weight: Any) -> bool:
    return type(weight).__module__.startswith("torchao.")


# --- PT2E: export, prepare, calibrate, convert -------------------------------------------------------------------


def export(model: nn.Module, inputs: Any) -> GraphModule:
    """``torch.export`` of ``model`` on example ``inputs`` (a tensor or keyword tensors), every dimension left dynamic
    where the forward allows it (so any batch size runs), as an unlifted module ready for PT2E."""
    kwargs = dict(inputs) if isinstance(inputs, dict) else None
    args = () if kwargs is not None else (inputs,)

    def dims(tensor: Any) -> Any:  # size-1 dimensions (e.g. one image channel) stay static
        if not isinstance(tensor, torch.Tensor):
            return None
        return {i: torch.export.Dim.AUTO for i, size in enumerate(tensor.shape) if size != 1}

    shapes = {k: dims(v) for k, v in kwargs.items()} if kwargs is not None else (dims(inputs),)
    try:
        with _quiet():
            return torch.export.export(model, args, kwargs, dynamic_shapes=shapes).module()
    except Exception as error:  # export raises many types (Unsupported, UserError, ...) depending on the forward
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(
            f"engine='torchao' needs a forward that torch.export can capture; {type(model).__name__} failed "
            f"({type(error).__name__}: {first_line}). Use DynamicQuantConfig(engine='torchao'), or engine='eager'"
        ) from error


def prepare(model: nn.Module, config: StaticQuantConfig | QATConfig, inputs: Any) -> GraphModule:
    """Export ``model`` and insert observers (``QATConfig``: fake quantization) where the quantizer annotated it."""
    check_pt2e(type(config).__name__)
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", f"{type(config).__name__}(engine='torchao')")
    qat = isinstance(config, QATConfig)
    model.train(qat)
    patterns = getattr(config, "skip_modules", ())
    quantizer = _quantizer(config, tuple(n for n, _ in model.named_modules() if n and skipped(n, patterns)))
    exported = export(model, inputs)
    with _quiet():
        prepared = (pt2e.prepare_qat_pt2e if qat else pt2e.prepare_pt2e)(exported, quantizer)
    return _allow_train_eval(prepared)


def _allow_train_eval(graph: GraphModule) -> GraphModule:
    """Let ``train()`` / ``eval()`` switch the exported graph's dropout and batch norm (Lightning calls both).

    Exported graphs refuse both by default; torchao's ``allow_exported_model_train_eval`` rewrites the ops but leaves
    the ``training`` flags as they were and returns ``None``, so this sets the flags and returns the model.
    """
    pt2e = require("torchao.quantization.pt2e", "engine='torchao'")

    def train(self: GraphModule, mode: bool = True) -> GraphModule:
        (pt2e.move_exported_model_to_train if mode else pt2e.move_exported_model_to_eval)(self)
        for module in self.modules():
            module.training = mode
        return self

    graph.train = types.MethodType(train, graph)
    graph.eval = types.MethodType(lambda self: self.train(False), graph)
    return graph


def convert(prepared: GraphModule) -> GraphModule:
    """Fold int8 weights into the graph, then drop the float weights it no longer reads."""
    pt2e = require("torchao.quantization.pt2e.quantize_pt2e", "engine='torchao'")
    prepared.eval()
    with _quiet():
        converted = pt2e.convert_pt2e(prepared)
    _drop_unread(converted)
    return _allow_train_eval(converted).eval()


def _drop_unread(graph: GraphModule) -> None:
    """Remove parameters and buffers no graph node reads (the float weights ``convert_pt2e`` replaced by int8)."""
    read = {node.target for node in graph.graph.nodes if node.op == "get_attr"}
    for name, _ in [*graph.named_parameters(), *graph.named_buffers()]:
        if name not in read:
            owner, _, attribute = name.rpartition(".")
            delattr(graph.get_submodule(owner), attribute)


def is_pt2e(model: nn.Module) -> bool:
    """A PT2E graph module: it quantizes or fake-quantizes through ``quantized_decomposed`` ops or torchao modules."""
    if not isinstance(model, GraphModule):
        return False
    if any(type(m).__module__.startswith("torchao.quantization.pt2e") for m in model.modules()):
        return True
    return any("quantized_decomposed" in str(n.target) for n in model.graph.nodes if n.op == "call_function")


def is_qat_prepared(model: nn.Module) -> bool:
    return isinstance(model, GraphModule) and any("FakeQuantize" in type(m).__name__ for m in model.modules())


def unobserved_fake_quant(model: nn.Module) -> list[str]:
    """Names of fake-quantize modules whose activation observers have not seen a batch."""
    names = []
    for name, module in model.named_modules():
        observer = getattr(module, "activation_post_process", None)
        min_val = getattr(observer, "min_val", None)
        if "FakeQuantize" in type(module).__name__ and isinstance(min_val, torch.Tensor):
            if min_val.numel() == 0 or bool(torch.isinf(min_val).all()):
                names.append(name)
    return names


# --- rebuilding a saved PT2E model ---------------------------------------------------------------------------------
# convert_pt2e writes each activation scale and zero point into the graph as numbers, not into the state dict: they
# are saved beside it (activation_qparams) and written back into the rebuilt graph.


def activation_qparams(graph: GraphModule) -> list[list[Any]]:
    """``[op, scale, zero_point]`` of each per-tensor (de)quantize step, in graph order."""
    return [[str(n.target), float(n.args[1]), int(n.args[2])] for n in _per_tensor_nodes(graph)]


def _per_tensor_nodes(graph: GraphModule) -> list[torch.fx.Node]:
    nodes = graph.graph.nodes
    return [n for n in nodes if n.op == "call_function" and str(n.target).endswith(_PER_TENSOR)]


def input_spec(inputs: Any) -> Any:
    """Shapes and dtypes of the example inputs (plain data), enough to export the float model again."""
    if isinstance(inputs, dict):
        return {k: input_spec(v) for k, v in inputs.items()}
    return {"shape": list(inputs.shape), "dtype": str(inputs.dtype).removeprefix("torch.")}


def example_from_spec(spec: dict[str, Any]) -> Any:
    if "shape" in spec and "dtype" in spec and not isinstance(spec["shape"], dict):
        return torch.zeros(spec["shape"], dtype=getattr(torch, spec["dtype"]))
    return {k: example_from_spec(v) for k, v in spec.items()}


def skeleton(model: nn.Module, config: StaticQuantConfig | QATConfig, spec: dict[str, Any]) -> GraphModule:
    """The converted graph of ``model`` under ``config``, from one batch of zeros: a saved state fills in the numbers.

    One forward runs so that per-channel weight scales take their real shapes; :func:`set_activation_qparams` then
    writes the saved activation scales into the graph.
    """
    inputs = example_from_spec(spec)
    if isinstance(config, QATConfig):
        model = model.train()
    prepared = prepare(model, config, inputs)
    with torch.no_grad(), _quiet():
        prepared(**inputs) if isinstance(inputs, dict) else prepared(inputs)
    return convert(prepared)


def set_activation_qparams(graph: GraphModule, qparams: list[list[Any]]) -> None:
    """Write saved activation scales and zero points into a rebuilt graph; raise if its steps differ."""
    nodes = _per_tensor_nodes(graph)
    if [str(n.target) for n in nodes] != [op for op, _, _ in qparams]:
        raise ValueError(
            f"the rebuilt PT2E graph has {len(nodes)} activation quantize steps where the saved one had "
            f"{len(qparams)} (or in another order)"
        )
    for node, (_, scale, zero_point) in zip(nodes, qparams, strict=True):
        node.args = (node.args[0], scale, zero_point, *node.args[3:])
    graph.recompile()


# --- what happened to each weight layer ----------------------------------------------------------------------------


def graph_layer_states(graph: GraphModule) -> dict[str, bool]:
    """Layer name -> whether its weight reaches its op through a dequantize step (int8), for each conv / linear op."""
    states: dict[str, bool] = {}
    for node in graph.graph.nodes:
        if node.op != "call_function" or not str(node.target).startswith(_WEIGHT_OPS) or len(node.args) < 2:
            continue
        stack = node.meta.get("nn_module_stack") or {}
        if not stack:
            continue
        name = list(stack.values())[-1][0]
        weight = node.args[1]
        quantized = isinstance(weight, torch.fx.Node) and "dequantize" in str(weight.target)
        fake = isinstance(weight, torch.fx.Node) and weight.op == "call_module"
        fake = fake and "FakeQuantize" in type(graph.get_submodule(str(weight.target))).__name__
        states[name] = states.get(name, False) or quantized or fake
    return states
