"""bitsandbytes layers: swap ``nn.Linear`` for ``Linear8bitLt`` / ``Linear4bit`` and reload them from a state dict."""

from __future__ import annotations

import logging
import os
from fnmatch import fnmatch
from typing import Any

import torch
from torch import nn

from lightning_distill.core._optional import require
from lightning_distill.core.quantization.config import BitsAndBytesConfig


def _bnb() -> Any:
    """The bitsandbytes module, or an ImportError naming the ``[bnb]`` extra that installs it."""
    # bitsandbytes logs a warning about optional CPU kernels at import; the pure PyTorch fallback is used instead.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    os.environ.setdefault("BITSANDBYTES_NOWELCOME", "1")
    return require("bitsandbytes", "BitsAndBytesConfig (use DynamicQuantConfig for int8 without it)")


def _quantized_layer(linear: nn.Linear, config: BitsAndBytesConfig, device: str) -> nn.Module:
    bnb = _bnb()
    weight = linear.weight.detach().to(torch.float32).cpu().clone()
    bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float().clone(), requires_grad=False)
    if config.weights == "int8":
        layer = bnb.nn.Linear8bitLt(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            has_fp16_weights=False,
            threshold=config.threshold,
        )
        layer.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
    else:
        layer = bnb.nn.Linear4bit(
            linear.in_features,
            linear.out_features,
            bias=linear.bias is not None,
            compute_dtype=getattr(torch, config.compute_dtype),
            quant_type=config.weights,
        )
        layer.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type=config.weights)
        # bitsandbytes 0.50 repacks 4-bit weights for AVX512-BF16 CPUs at the first forward, and a model reloaded from
        # a state dict then fails to repack (rows not a multiple of the block size): keep the portable layout.
        layer.support_avx512bf16_for_cpu = False
    if bias is not None:
        layer.bias = bias
    # Moving the layer to a device is what quantizes bitsandbytes parameters.
    return layer.to(device).eval()


def targets(model: nn.Module, patterns: tuple[str, ...]) -> list[str]:
    """Names of the layers :func:`replace_linears` swaps: every plain ``nn.Linear`` not matched by ``patterns``."""
    return [
        name
        for name, module in model.named_modules()
        if name and type(module) is nn.Linear and not any(fnmatch(name, p) for p in patterns)
    ]


def replace_linears(model: nn.Module, config: BitsAndBytesConfig, device: str = "cpu") -> int:
    """Swap every ``nn.Linear`` not matched by ``config.skip_modules`` in place; return how many were swapped."""
    swapped = 0
    for parent_name, parent in list(model.named_modules()):
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if type(child) is nn.Linear and not any(fnmatch(full, p) for p in config.skip_modules):
                setattr(parent, child_name, _quantized_layer(child, config, device))
                swapped += 1
    if swapped == 0:
        raise ValueError("BitsAndBytesConfig found no nn.Linear layer to quantize (all skipped or none in the model)")
    return swapped


def load_state_dict(model: nn.Module, state: dict[str, Any]) -> None:
    """Load a state dict saved from a bitsandbytes-quantized model into one rebuilt by :func:`replace_linears`.

    4-bit weights come back through ``Params4bit.from_prequantized`` (plain ``load_state_dict`` cannot restore their
    quantization state); everything else loads strictly.
    """
    bnb = _bnb()
    state = dict(state)
    for name, module in model.named_modules():
        if not isinstance(module, bnb.nn.Linear4bit):
            continue
        prefix = f"{name}.weight"
        stats = {k[len(prefix) + 1 :]: state.pop(k) for k in [k for k in state if k.startswith(prefix + ".")]}
        module.weight = bnb.nn.Params4bit.from_prequantized(
            data=state.pop(prefix), quantized_stats=stats, requires_grad=False, device="cpu", module=module
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not _is_reloaded_4bit_weight(model, k, bnb)]
    if missing or unexpected:
        raise ValueError(f"saved bitsandbytes state does not fit the model: missing {missing}, unexpected {unexpected}")


def _is_reloaded_4bit_weight(model: nn.Module, key: str, bnb: Any) -> bool:
    owner, _, leaf = key.rpartition(".")
    return leaf == "weight" and isinstance(model.get_submodule(owner), bnb.nn.Linear4bit)
