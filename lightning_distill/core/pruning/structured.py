"""Structured pruning: remove whole units and rewire their neighbours so the model is physically smaller.

Unit groups (convolution channels, Linear neurons, attention heads) are found by one dependency analysis of the
traced network (see :mod:`lightning_distill.core.pruning.graph`), scored by
:mod:`lightning_distill.core.pruning.importance`
and removed with torch-pruning, which cuts every coupled layer (BatchNorm, residual additions, concatenations,
depthwise and grouped convolutions, consumers). Parameters keep their identity: optimizers keep their references and
:func:`slice_optimizer_states` cuts their per-parameter states the same way, so training goes on without a restart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.core.pruning.graph import (
    EXAMPLE_HINT,
    PRUNABLE,
    UNIT_TYPES,
    UnitGroup,
    build_graph,
    default_example_inputs,
    graph_groups,
)
from lightning_distill.core.pruning.importance import l1_importance
from lightning_distill.core.pruning.selection import DEFAULT_EXCLUDE, exclusion_reason

_HEAD_ATTRIBUTES = ("num_attention_heads", "n_heads", "num_heads")


@dataclass(frozen=True)
class SliceRecord:
    """A parameter cut from ``old_shape`` to ``new_shape``, keeping the flat positions ``index``; states follow."""

    param: nn.Parameter
    index: Tensor
    old_shape: torch.Size
    new_shape: torch.Size


def _networks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    # A LightningModule's forward is step logic, not the network: trace the networks it holds instead.
    if hasattr(model, "training_step"):
        return [(name, child) for name, child in model.named_children() if any(True for _ in child.parameters())]
    return [("", model)]


def _left_alone(prefix: str, network: nn.Module, include: Sequence[str], exclude: Sequence[str]) -> str | None:
    """Why every prunable layer of ``network`` is left alone (pattern or frozen), or ``None`` when one is not."""
    reasons = [
        exclusion_reason(f"{prefix}{n}", include, exclude, m.weight.requires_grad)
        for n, m in network.named_modules()
        if isinstance(m, PRUNABLE)
    ]
    return reasons[0] if reasons and all(reasons) else None


def find_unit_groups(
    model: nn.Module,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    unit_types: Sequence[str] = UNIT_TYPES,
    include_frozen: bool = False,
    example_inputs: Any = None,
) -> tuple[list[UnitGroup], dict[str, str]]:
    """The unit groups of ``model`` chosen by name pattern, and every layer left alone with the reason.

    ``model`` is traced on ``example_inputs`` (defaults exist for Hugging Face models and plain MLPs only); for a
    LightningModule each network it holds (``model.``, ``student.``, ...) is traced with them, and a network whose
    layers are all excluded or frozen (a teacher) is not traced but reported as one entry. Frozen groups
    (``requires_grad=False``) are skipped unless ``include_frozen``.

    Raises:
        ValueError: ``unit_types`` is not a non-empty list of :data:`UNIT_TYPES`; a network has no default inputs
            or does not run on the ones given (the message says what to pass).
    """
    unknown = [t for t in unit_types if t not in UNIT_TYPES]
    if unknown or not unit_types:
        raise ValueError(f"unit_types must be a non-empty list of {list(UNIT_TYPES)}, got {list(unit_types)!r}")
    groups: list[UnitGroup] = []
    skipped: dict[str, str] = {}
    networks = _networks(model)
    for name, network in networks:
        reason = None if include_frozen else _left_alone(f"{name}." if name else "", network, include, exclude)
        if reason is not None:
            skipped[name] = reason
    whole = _trace_whole(model, example_inputs)
    if whole is not None:  # a LightningModule whose forward is the network (it takes the batch's inputs)
        _collect(whole, model, "", groups, skipped)
        return _choose(groups, skipped, include, exclude, unit_types, include_frozen)
    for name, network in networks:
        if name in skipped:
            continue
        if isinstance(network, PRUNABLE):
            skipped[name] = "a layer held directly by the LightningModule; hold the network in a submodule"
            continue
        inputs = example_inputs if example_inputs is not None else default_example_inputs(network)
        if inputs is None:
            raise ValueError(
                f"structured pruning traces {name or 'the model'} ({type(network).__name__}) to find which channels "
                f"must be removed together, and needs example inputs for anything but Hugging Face models and plain "
                f"MLPs; {EXAMPLE_HINT}"
            )
        try:
            graph = build_graph(network, inputs, name or "the model")
        except ValueError as error:
            if len(networks) == 1:
                raise
            skipped[name] = str(error)  # e.g. a loss module that does not take the batch's inputs
            continue
        _collect(graph, network, f"{name}." if name else "", groups, skipped)
    return _choose(groups, skipped, include, exclude, unit_types, include_frozen)


def _trace_whole(model: nn.Module, example_inputs: Any) -> Any:
    """The graph of a LightningModule's own forward on ``example_inputs``, or ``None`` when it does not take them."""
    if not hasattr(model, "training_step") or example_inputs is None:
        return None
    try:
        return build_graph(model, example_inputs, "the LightningModule", whole_input=True)
    except ValueError:
        return None


def _collect(graph: Any, network: nn.Module, prefix: str, groups: list[UnitGroup], skipped: dict[str, str]) -> None:
    """Add the groups of ``graph`` to ``groups`` and the layers it leaves alone to ``skipped``."""
    found, left = graph_groups(graph, network, prefix)
    skipped.update(left)
    groups += found
    in_groups = {id(m) for g in found for m in g.layers.values()}
    for n, m in network.named_modules():
        full = f"{prefix}{n}"
        known = full in skipped or any(full.startswith(f"{name}.") for name in skipped)
        if isinstance(m, PRUNABLE) and id(m) not in in_groups and m not in graph.module2node and not known:
            skipped[full] = "not used by the forward pass on the example inputs"


def _choose(
    groups: list[UnitGroup],
    skipped: dict[str, str],
    include: Sequence[str],
    exclude: Sequence[str],
    unit_types: Sequence[str],
    include_frozen: bool,
) -> tuple[list[UnitGroup], dict[str, str]]:
    chosen = []
    for group in groups:
        trainable = include_frozen or all(p.weight.requires_grad for p in group.producers)
        reason = exclusion_reason(group.name, include, exclude, trainable)
        if reason is None and group.kind not in unit_types:
            reason = f"{group.kind} are not in unit_types={list(unit_types)}"
        if reason is None:
            chosen.append(group)
        else:
            skipped[group.name] = reason
    return chosen, skipped


def _group_parameters(group: UnitGroup) -> list[tuple[nn.Module, str, nn.Parameter]]:
    found = []
    for module, _, _, _ in group.items:
        if isinstance(module, nn.Module):
            found += [(module, n, p) for n, p in module._parameters.items() if p is not None]
    unique = {id(p): entry for entry in found for p in [entry[2]]}
    return list(unique.values())


@torch.no_grad()
def remove_units(group: UnitGroup, keep: Tensor) -> list[SliceRecord]:
    """Keep only the units ``keep`` (indices) of ``group``, shrinking every layer of the group in place.

    In a hand-written training loop, drop the previous step's loss and outputs before calling this: while a graph
    that used a parameter is alive, autograd keeps the parameter's old shape and the next backward fails with
    "returned an invalid gradient". Lightning's loop (and so the pruning callbacks) already frees it.

    Raises:
        ValueError: ``keep`` is empty (a layer cannot lose every unit).
    """
    keep = torch.as_tensor(keep, dtype=torch.long).cpu()
    if keep.numel() == 0:
        raise ValueError(f"cannot remove every unit of {group.name} ({group.num_units} {group.kind})")
    removed = torch.nonzero(~torch.isin(group.unit_of, keep)).flatten().tolist()
    if not removed:
        return []
    params = _group_parameters(group)
    saved = {}
    for _, _, param in params:
        # Each entry holds its own flat position while torch-pruning cuts: what is left says what was kept.
        saved[id(param)] = param.data
        param.data = torch.arange(param.numel(), dtype=torch.float64, device=param.device).view(param.shape)
        param.grad = None
    handler = group.graph.get_pruner_of_module(group.root).prune_out_channels
    with torch.enable_grad():
        group.graph.get_pruning_group(group.root, handler, removed).prune(record_history=False)
    records = []
    for module, name, param in params:
        new = module._parameters[name]
        index = new.data.long().flatten()
        param.data = saved[id(param)].flatten()[index].view(new.shape).clone()
        module._parameters[name] = param  # same Parameter object: optimizers keep their references
        if new is not param:
            records.append(SliceRecord(param, index, torch.Size(saved[id(param)].shape), new.shape))
    for attention in group.attentions:
        set_head_count(attention, keep.numel())
    return records


def set_head_count(attention: nn.Module, heads: int) -> None:
    """Update the head-count attributes of an attention module after heads were removed."""
    for attribute in _HEAD_ATTRIBUTES:
        if isinstance(getattr(attention, attribute, None), int):
            setattr(attention, attribute, heads)
    size = getattr(attention, "attention_head_size", None) or getattr(attention, "head_dim", None)
    if hasattr(attention, "all_head_size") and size:
        attention.all_head_size = heads * size


def units_to_keep(original_units: int, sparsity: float, name: str = "layer") -> int:
    """Units left after removing ``round(sparsity * original_units)``; raises if that leaves none."""
    remaining = original_units - round(sparsity * original_units)
    if remaining < 1:
        raise ValueError(
            f"sparsity {sparsity:.3f} would remove every unit of {name} ({original_units} units); use a lower "
            "final_sparsity or exclude the layer"
        )
    return remaining


def keep_indices(scores: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` highest scores, in ascending index order (stable ties: lower index wins)."""
    order = torch.argsort(-scores.float().cpu(), stable=True)
    return order[:count].sort().values


def slice_optimizer_states(optimizers: Sequence[torch.optim.Optimizer], records: Sequence[SliceRecord]) -> None:
    """Cut the per-parameter optimizer states (e.g. Adam moments) the way :func:`remove_units` cut the parameters."""
    for optimizer in optimizers:
        for record in records:
            state = optimizer.state.get(record.param)
            if not state:
                continue
            for key, value in state.items():
                if isinstance(value, Tensor) and value.shape == record.old_shape:
                    index = record.index.to(value.device)
                    state[key] = value.flatten()[index].view(record.new_shape).clone()


def describe_skipped(skipped: dict[str, str], limit: int = 20) -> str:
    """The layers left alone and why, for an error message that nothing was selected."""
    if not skipped:
        return "the model has no Linear or convolution layer"
    shown = list(skipped.items())[:limit]
    more = f" and {len(skipped) - limit} more" if len(skipped) > limit else ""
    return "found " + "; ".join(f"{name}: {reason}" for name, reason in shown) + more


def prune_structured(
    model: nn.Module,
    sparsity: float,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    unit_types: Sequence[str] = UNIT_TYPES,
    scores: dict[str, Tensor] | None = None,
    example_inputs: Any = None,
) -> dict[str, tuple[int, int]]:
    """One-shot structured pruning of ``model`` in place, without Lightning.

    Each chosen group loses ``round(sparsity * units)`` of its units, the least important first (L1 norm, or the
    given ``scores`` by group name, e.g. accumulated :func:`~lightning_distill.core.pruning.taylor_importance`).

    Example:
        ``prune_structured(resnet, 0.5, example_inputs=torch.randn(1, 3, 224, 224))`` halves every convolution's
        channels; ``prune_structured(bert_classifier, 0.5)`` removes half the heads and FFN neurons of every layer.

    Args:
        example_inputs: What ``model``'s forward takes (a tensor, a tuple of positional arguments or a dict of
            keyword arguments), to trace it; optional for Hugging Face models and plain MLPs.

    Returns:
        ``{group name: (units before, units after)}``.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    groups, skipped = find_unit_groups(model, include, exclude, unit_types, example_inputs=example_inputs)
    if not groups:
        raise ValueError(
            f"include={list(include)} (exclude={list(exclude)}, unit_types={list(unit_types)}) selects no prunable "
            f"unit group; {describe_skipped(skipped)}"
        )
    counts = {g.name: units_to_keep(g.num_units, sparsity, g.name) for g in groups}
    importance = {g.name: scores[g.name] if scores and g.name in scores else l1_importance(g) for g in groups}
    result = {}
    for group in groups:
        before = group.num_units
        remove_units(group, keep_indices(importance[group.name], counts[group.name]))
        result[group.name] = (before, counts[group.name])
    return result
