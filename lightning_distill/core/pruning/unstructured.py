"""Unstructured L1 magnitude pruning with masks: the smallest weights become exact zeros and stay zero.

Unstructured sparsity keeps every tensor's shape: the model is not smaller in memory or on disk (unless compressed)
and dense kernels run no faster. Use :mod:`lightning_distill.core.pruning.structured` for a model that is physically
smaller and faster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from lightning_distill.core.pruning.selection import DEFAULT_EXCLUDE, select_weights

Scope = Literal["global", "layer"]


def _prune_flat(scores: Tensor, keep: Tensor, sparsity: float) -> Tensor:
    """A keep-mask over ``scores`` with ``round(sparsity * n)`` entries pruned, never reviving a pruned entry."""
    n = scores.numel()
    target = round(sparsity * n)
    already = n - int(keep.sum())
    if target <= already:
        return keep.clone()
    # Pruned entries sort first; a stable sort breaks ties by position, so masks are reproducible.
    scores = torch.where(keep, scores, torch.full_like(scores, -1.0))
    order = torch.argsort(scores, stable=True)
    new_keep = torch.ones(n, dtype=torch.bool, device=scores.device)
    new_keep[order[:target]] = False
    return new_keep


def magnitude_masks(
    weights: Mapping[str, Tensor],
    sparsity: float,
    scope: Scope = "global",
    masks: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Boolean keep-masks that prune the ``sparsity`` fraction of entries with the smallest absolute value.

    Args:
        weights: Tensors to prune, by name.
        sparsity: Fraction to prune, in [0, 1): over all tensors together (``scope="global"``) or in each tensor
            (``scope="layer"``).
        scope: ``"global"`` ranks all weights together (layers with small weights lose more); ``"layer"`` prunes
            every tensor to the same sparsity.
        masks: Masks from an earlier pruning step: entries they prune stay pruned and count towards ``sparsity``.

    Returns:
        A mask per name, ``True`` where the weight is kept, with the shape of the weight.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    if scope not in ("global", "layer"):
        raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
    masks = masks or {}
    flat = {n: w.detach().abs().flatten().float() for n, w in weights.items()}
    keep = {
        n: masks[n].flatten().bool() if n in masks else torch.ones_like(s, dtype=torch.bool) for n, s in flat.items()
    }
    if scope == "layer":
        new = {n: _prune_flat(flat[n], keep[n], sparsity) for n in flat}
    else:
        names = list(flat)
        joined = _prune_flat(torch.cat([flat[n] for n in names]), torch.cat([keep[n] for n in names]), sparsity)
        new = dict(zip(names, joined.split([flat[n].numel() for n in names]), strict=True))
    return {n: new[n].view_as(weights[n]) for n in weights}


@torch.no_grad()
def apply_masks(weights: Mapping[str, Tensor], masks: Mapping[str, Tensor]) -> None:
    """Zero the pruned entries of each weight in place."""
    for name, mask in masks.items():
        weight = weights[name]
        weight.mul_(mask.to(device=weight.device, dtype=weight.dtype))


def sparsity(tensor: Tensor) -> float:
    """Fraction of exact zeros in ``tensor``."""
    return float((tensor == 0).sum()) / max(1, tensor.numel())


def sparsity_report(weights: Mapping[str, Tensor]) -> dict[str, float]:
    """Measured sparsity of each weight and, under ``"overall"``, of all of them together."""
    report = {name: sparsity(w) for name, w in weights.items()}
    zeros = sum(int((w == 0).sum()) for w in weights.values())
    report["overall"] = zeros / max(1, sum(w.numel() for w in weights.values()))
    return report


def prune_magnitude(
    model: nn.Module,
    sparsity: float,
    scope: Scope = "global",
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    layer_types: Sequence[str] = ("Linear",),
) -> dict[str, Tensor]:
    """One-shot L1 magnitude pruning of ``model`` in place, without Lightning.

    Example:
        ``masks = prune_magnitude(mlp, 0.7, include=["hidden.*"])`` zeroes 70% of the hidden layers' weights.

    Returns:
        The keep-masks by parameter name; apply them again after optimizer steps to keep the zeros while fine-tuning.
    """
    weights, _ = select_weights(model, include, exclude, layer_types)
    masks = magnitude_masks(weights, sparsity, scope)
    apply_masks(weights, masks)
    return masks
