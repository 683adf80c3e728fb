"""Importance of each unit of a :class:`~lightning_distill.core.pruning.graph.UnitGroup`, over every parameter it owns.

A unit owns, in every layer of its group, the slice that goes when it is removed: rows (weight and bias) of the
layers that produce it, columns of the layers that consume it, and the entries of the normalisation layers between.

- L1: ``sum |w|`` over those entries.
- First-order Taylor (Molchanov et al., "Importance Estimation for Neural Network Pruning", CVPR 2019):
  ``|sum w * dL/dw|`` over those entries, for the gradients now in ``.grad`` (summed over batches by the callback).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lightning_distill.core.pruning.graph import _CONV, UnitGroup

Values = Callable[[nn.Parameter], Tensor | None]


def _sum_except(tensor: Tensor, dim: int) -> Tensor:
    """Sum over every dimension but ``dim`` (the channel dimension)."""
    return tensor.movedim(dim, 0).reshape(tensor.shape[dim], -1).sum(1)


def _conv_channels(conv: nn.Module, out: bool, values: Values) -> Tensor | None:
    weight = values(conv.weight)
    if weight is None:
        return None
    transposed = isinstance(conv, (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d))
    depthwise = conv.groups == conv.out_channels and conv.out_channels > 1
    if depthwise or out:
        total = _sum_except(weight, 1 if transposed else 0)
        bias = values(conv.bias) if conv.bias is not None else None
        return total + bias if bias is not None else total
    if transposed or conv.groups == 1:
        return _sum_except(weight, 0 if transposed else 1)
    # Grouped: input channel g * per_group + i is column i of the rows of group g.
    per_group = weight.view(conv.groups, conv.out_channels // conv.groups, *weight.shape[1:])
    return per_group.transpose(1, 2).reshape(conv.groups * weight.shape[1], -1).sum(1)


def _channels(module: nn.Module | nn.Parameter, out: bool, values: Values, dim: int) -> Tensor | None:
    """Per channel of ``module`` (output side when ``out``), the sum of ``values`` over the entries it owns."""
    if isinstance(module, nn.Parameter):
        found = values(module)
        return None if found is None else _sum_except(found, dim)
    if isinstance(module, _CONV):
        return _conv_channels(module, out, values)
    if isinstance(module, nn.Linear):
        weight = values(module.weight)
        if weight is None:
            return None
        if not out:
            return weight.sum(0)
        bias = values(module.bias) if module.bias is not None else None
        return weight.sum(1) + (bias if bias is not None else 0)
    if isinstance(module, nn.Embedding):
        weight = values(module.weight)
        return None if weight is None else weight.sum(0)
    found = [values(p) for p in (getattr(module, "weight", None), getattr(module, "bias", None)) if p is not None]
    found = [f.reshape(-1) for f in found if f is not None and f.dim() >= 1]
    return torch.stack(found).sum(0) if found else None


def _per_unit(group: UnitGroup, values: Values) -> Tensor:
    """Sum ``values`` over every entry each unit owns, in every layer of the group."""
    total = torch.zeros(group.num_units, dtype=torch.float64)
    seen: set[tuple[int, bool]] = set()
    for module, out, idxs, root_idxs in group.items:
        # A normalisation layer is listed on both sides; its entries are counted once.
        key = (id(module), out or not isinstance(module, (nn.Linear, *_CONV)))
        if key in seen:
            continue
        seen.add(key)
        dim = getattr(group.graph.module2node.get(module), "pruning_dim", -1) if isinstance(module, nn.Parameter) else 0
        per_channel = _channels(module, out, values, dim)
        if per_channel is None or idxs.numel() == 0:
            continue
        picked = per_channel.detach().double().cpu()[idxs]
        total.index_add_(0, group.unit_of[root_idxs], picked)
    return total.float()


@torch.no_grad()
def l1_importance(group: UnitGroup) -> Tensor:
    """Sum of ``|w|`` over every weight and bias entry each unit owns, one score per unit."""
    return _per_unit(group, lambda p: p.abs())


@torch.no_grad()
def taylor_importance(group: UnitGroup) -> Tensor:
    """``|sum w * grad|`` over each unit's entries for the gradients now held in ``.grad`` (zero where none)."""
    return _per_unit(group, lambda p: p * p.grad if p.grad is not None else None).abs()
