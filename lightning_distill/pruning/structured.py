"""Structured pruning: remove whole units and rewire their neighbours so the model is physically smaller.

A *unit group* is a set of units that are removed together from the Linear layers that produce them (rows of the
weight and entries of the bias) and the Linear layers that consume them (columns of the weight):

- ``neurons`` of an MLP: the outputs of a Linear whose result only passes through elementwise operations (ReLU,
  GELU, dropout, ...) into one next Linear, found by tracing the model with ``torch.fx``. The group is named after
  the producing Linear (``model.hidden.0``). A Linear whose outputs are the model's outputs is never pruned.
- ``neurons`` of a transformer feed-forward block: the intermediate neurons of BERT-style layers
  (``intermediate.dense`` -> ``output.dense``) and DistilBERT layers (``ffn.lin1`` -> ``ffn.lin2``); the group is named
  after the first Linear.
- ``heads`` of self-attention: the query/key/value rows of a head and the matching columns of the output projection
  (BERT: ``attention.self`` + ``attention.output.dense``; DistilBERT: ``attention.{q,k,v,out}_lin``); the group is
  named after the attention module. Its head-count attributes are updated.

Importance of a unit is either its L1 weight norm (the sum of ``|w|`` over every weight and bias entry the unit owns,
in producers and consumers) or a first-order Taylor score (Molchanov et al., "Importance Estimation for Neural
Network Pruning", CVPR 2019): ``|sum_w w * dL/dw|`` over the unit's entries, summed over training batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.fx
import torch.nn.functional as F
from torch import Tensor, nn

from lightning_distill.pruning.selection import DEFAULT_EXCLUDE, exclusion_reason

UnitType = Literal["neurons", "heads"]
Importance = Literal["l1", "taylor"]
UNIT_TYPES = ("neurons", "heads")

_ELEMENTWISE_MODULES = (
    nn.ReLU,
    nn.GELU,
    nn.SiLU,
    nn.Tanh,
    nn.Sigmoid,
    nn.LeakyReLU,
    nn.ELU,
    nn.Dropout,
    nn.Identity,
    nn.Hardtanh,
    nn.ReLU6,
)
_ELEMENTWISE_FUNCTIONS = {F.relu, F.gelu, F.silu, F.dropout, F.leaky_relu, F.elu, torch.relu, torch.tanh, torch.sigmoid}
_ELEMENTWISE_METHODS = {"relu", "tanh", "sigmoid"}
_HEAD_ATTRIBUTES = ("num_attention_heads", "n_heads")


@dataclass(eq=False)
class UnitGroup:
    """Units removed together from ``producers`` (output rows) and ``consumers`` (input columns).

    Attributes:
        name: Module name the group is known by (see the module docstring).
        kind: ``"neurons"`` or ``"heads"``.
        producers: Linears whose outputs are the units.
        consumers: Linears whose inputs are the units.
        unit_size: Rows per unit (1 for neurons, the head size for heads).
        attention: For heads, the module whose head-count attributes follow the pruning.
    """

    name: str
    kind: UnitType
    producers: list[nn.Linear]
    consumers: list[nn.Linear]
    unit_size: int = 1
    attention: nn.Module | None = None
    parameters_per_unit: int = field(init=False)

    def __post_init__(self) -> None:
        per_row = sum(p.in_features + (p.bias is not None) for p in self.producers)
        self.parameters_per_unit = self.unit_size * (per_row + sum(c.out_features for c in self.consumers))

    @property
    def num_units(self) -> int:
        return self.producers[0].out_features // self.unit_size


@dataclass(frozen=True)
class SliceRecord:
    """A parameter cut along ``dim`` to ``index``; optimizer states of ``old_shape`` are cut the same way."""

    param: nn.Parameter
    dim: int
    index: Tensor
    old_shape: torch.Size


# --- finding unit groups ---------------------------------------------------------------------------------------------


def _is_bert_layer(module: nn.Module) -> bool:
    attention = getattr(module, "attention", None)
    return (
        isinstance(getattr(getattr(attention, "self", None), "query", None), nn.Linear)
        and isinstance(getattr(getattr(attention, "output", None), "dense", None), nn.Linear)
        and isinstance(getattr(getattr(module, "intermediate", None), "dense", None), nn.Linear)
        and isinstance(getattr(getattr(module, "output", None), "dense", None), nn.Linear)
    )


def _is_distilbert_layer(module: nn.Module) -> bool:
    attention, ffn = getattr(module, "attention", None), getattr(module, "ffn", None)
    return isinstance(getattr(attention, "q_lin", None), nn.Linear) and isinstance(
        getattr(ffn, "lin1", None), nn.Linear
    )


def _transformer_groups(name: str, layer: nn.Module) -> list[UnitGroup]:
    if _is_bert_layer(layer):
        attn = layer.attention.self
        return [
            UnitGroup(
                f"{name}.attention.self",
                "heads",
                [attn.query, attn.key, attn.value],
                [layer.attention.output.dense],
                unit_size=attn.attention_head_size,
                attention=attn,
            ),
            UnitGroup(f"{name}.intermediate.dense", "neurons", [layer.intermediate.dense], [layer.output.dense]),
        ]
    attn, ffn = layer.attention, layer.ffn
    return [
        UnitGroup(
            f"{name}.attention",
            "heads",
            [attn.q_lin, attn.k_lin, attn.v_lin],
            [attn.out_lin],
            unit_size=attn.attention_head_size,
            attention=attn,
        ),
        UnitGroup(f"{name}.ffn.lin1", "neurons", [ffn.lin1], [ffn.lin2]),
    ]


def _passes_elementwise(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], _ELEMENTWISE_MODULES)
    if node.op == "call_function":
        return node.target in _ELEMENTWISE_FUNCTIONS
    return node.op == "call_method" and node.target in _ELEMENTWISE_METHODS


def _mlp_groups(prefix: str, root: nn.Module) -> tuple[list[UnitGroup], dict[str, str]]:
    """Linear -> elementwise ops -> Linear chains of ``root``, found by symbolic tracing."""
    graph = torch.fx.symbolic_trace(root).graph
    modules = dict(root.named_modules())
    calls: dict[str, int] = {}
    for node in graph.nodes:
        if node.op == "call_module":
            calls[node.target] = calls.get(node.target, 0) + 1
    groups, skipped = [], {}
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(modules[node.target], nn.Linear):
            continue
        name = f"{prefix}{node.target}"
        current, reason, consumer = node, None, None
        while True:
            users = list(current.users)
            if not users or (len(users) == 1 and users[0].op == "output"):
                reason = "its outputs are the model's outputs"
                break
            if len(users) != 1:
                reason = "its output feeds several operations"
                break
            user = users[0]
            if user.op == "call_module" and isinstance(modules[user.target], nn.Linear):
                consumer = user.target
                break
            if not _passes_elementwise(user, modules):
                reason = f"its output feeds {user.target!s}, which cannot be rewired"
                break
            current = user
        if consumer is not None and (calls[node.target] > 1 or calls[consumer] > 1):
            reason = "the Linear is called more than once"
        if reason is None:
            groups.append(UnitGroup(name, "neurons", [modules[node.target]], [modules[consumer]]))
        else:
            skipped[name] = reason
    return groups, skipped


def find_unit_groups(
    model: nn.Module,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    unit_types: Sequence[str] = UNIT_TYPES,
    include_frozen: bool = False,
) -> tuple[list[UnitGroup], dict[str, str]]:
    """The unit groups of ``model`` chosen by name pattern, and the Linear layers left alone with the reason.

    Transformer layers (BERT-style and DistilBERT) are recognised by their attribute names wherever they are; every
    other network is traced with ``torch.fx`` to find MLP chains: ``model`` itself, or each module a LightningModule
    holds (``model.``, ``student.``, ...). Frozen groups (``requires_grad=False``) are skipped unless
    ``include_frozen`` (used to tell which sizes pruning can have changed, whatever is trainable now).
    """
    unknown = [t for t in unit_types if t not in UNIT_TYPES]
    if unknown or not unit_types:
        raise ValueError(f"unit_types must be a non-empty list of {list(UNIT_TYPES)}, got {list(unit_types)!r}")
    groups: list[UnitGroup] = []
    skipped: dict[str, str] = {}
    covered: set[int] = set()
    for name, module in model.named_modules():
        if _is_bert_layer(module) or _is_distilbert_layer(module):
            groups += _transformer_groups(name, module)
            covered |= {id(m) for m in module.modules()}
    # A LightningModule's forward is step logic, not the network: trace the networks it holds instead.
    roots = list(model.named_children()) if hasattr(model, "training_step") else [("", model)]
    for root_name, root in roots:
        prefix = f"{root_name}." if root_name else ""
        linears = [
            f"{prefix}{n}" if n else root_name
            for n, m in root.named_modules()
            if isinstance(m, nn.Linear) and id(m) not in covered
        ]
        if not linears:
            continue
        if isinstance(root, nn.Linear):
            skipped[root_name] = "a Linear held directly by the LightningModule; hold the network in a submodule"
        elif any(id(m) in covered for m in root.modules()):
            for name in linears:
                skipped[name] = "outside the transformer layers (pooler or classification head): not pruned"
        else:
            try:
                found, not_chained = _mlp_groups(prefix, root)
            except Exception as error:  # symbolic tracing fails on data-dependent control flow
                for name in linears:
                    skipped[name] = f"torch.fx could not trace {root_name or type(root).__name__} ({error})"
                continue
            groups += found
            skipped.update(not_chained)
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


# --- importance ------------------------------------------------------------------------------------------------------


def _per_unit(group: UnitGroup, values: list[tuple[Tensor, int]]) -> Tensor:
    """Sum each ``(tensor, dim)`` over all dims but ``dim``, then over the ``unit_size`` rows of each unit."""
    total = torch.zeros(group.num_units * group.unit_size, device=group.producers[0].weight.device)
    for tensor, dim in values:
        t = tensor.float()
        total += t.sum(dim=1 - dim) if t.dim() == 2 else t
    return total.view(group.num_units, group.unit_size).sum(1)


def _owned(group: UnitGroup, get: str) -> list[tuple[Tensor, int]]:
    out = []
    for linear in group.producers:
        out.append((getattr(linear.weight, get) if get else linear.weight, 0))
        if linear.bias is not None:
            out.append((getattr(linear.bias, get) if get else linear.bias, 0))
    out += [(getattr(c.weight, get) if get else c.weight, 1) for c in group.consumers]
    return out


@torch.no_grad()
def l1_importance(group: UnitGroup) -> Tensor:
    """Sum of ``|w|`` over every weight and bias entry each unit owns, one score per unit."""
    return _per_unit(group, [(t.abs(), d) for t, d in _owned(group, "")])


@torch.no_grad()
def taylor_importance(group: UnitGroup) -> Tensor:
    """``|sum w * grad|`` over each unit's entries for the gradients now held in ``.grad`` (zeros where none)."""
    weights, grads = _owned(group, ""), _owned(group, "grad")
    products = [
        (w * g if g is not None else torch.zeros_like(w), d) for (w, d), (g, _) in zip(weights, grads, strict=True)
    ]
    return _per_unit(group, products).abs()


# --- removal ---------------------------------------------------------------------------------------------------------


def _cut(param: nn.Parameter, dim: int, index: Tensor, records: list[SliceRecord]) -> None:
    records.append(SliceRecord(param, dim, index, param.shape))
    # Same Parameter object, new data: optimizers keep their references (their states are cut by the caller).
    param.data = param.data.index_select(dim, index.to(param.device)).clone()
    param.grad = None


@torch.no_grad()
def remove_units(group: UnitGroup, keep: Tensor) -> list[SliceRecord]:
    """Keep only the units ``keep`` (indices) of ``group``, shrinking its Linears in place.

    In a hand-written training loop, drop the previous step's loss and outputs before calling this: while a graph
    that used a parameter is alive, autograd keeps the parameter's old shape and the next backward fails with
    "returned an invalid gradient". Lightning's loop (and so the pruning callbacks) already frees it.

    Raises:
        ValueError: ``keep`` is empty (a layer cannot lose every unit).
    """
    keep = torch.as_tensor(keep, dtype=torch.long).sort().values.cpu()
    if keep.numel() == 0:
        raise ValueError(f"cannot remove every unit of {group.name} ({group.num_units} {group.kind})")
    rows = (keep[:, None] * group.unit_size + torch.arange(group.unit_size)).flatten()
    records: list[SliceRecord] = []
    for linear in group.producers:
        _cut(linear.weight, 0, rows, records)
        if linear.bias is not None:
            _cut(linear.bias, 0, rows, records)
        linear.out_features = rows.numel()
    for linear in group.consumers:
        _cut(linear.weight, 1, rows, records)
        linear.in_features = rows.numel()
    if group.attention is not None:
        set_head_count(group.attention, keep.numel())
    return records


def set_head_count(attention: nn.Module, heads: int) -> None:
    """Update the head-count attributes of a BERT or DistilBERT attention module after heads were removed."""
    for attribute in _HEAD_ATTRIBUTES:
        if hasattr(attention, attribute):
            setattr(attention, attribute, heads)
    if hasattr(attention, "all_head_size"):
        attention.all_head_size = heads * attention.attention_head_size


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
                    state[key] = value.index_select(record.dim, record.index.to(value.device)).clone()


def prune_structured(
    model: nn.Module,
    sparsity: float,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    unit_types: Sequence[str] = UNIT_TYPES,
    scores: dict[str, Tensor] | None = None,
) -> dict[str, tuple[int, int]]:
    """One-shot structured pruning of ``model`` in place, without Lightning.

    Each chosen group loses ``round(sparsity * units)`` of its units, the least important first (L1 norm, or the
    given ``scores`` by group name, e.g. accumulated :func:`taylor_importance`).

    Example:
        ``prune_structured(bert_classifier, 0.5)`` removes half the heads and half the FFN neurons of every layer.

    Returns:
        ``{group name: (units before, units after)}``.
    """
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    groups, _ = find_unit_groups(model, include, exclude, unit_types)
    if not groups:
        raise ValueError(f"include={list(include)} (exclude={list(exclude)}) selects no prunable unit group")
    counts = {g.name: units_to_keep(g.num_units, sparsity, g.name) for g in groups}
    result = {}
    for group in groups:
        before = group.num_units
        importance = scores[group.name] if scores and group.name in scores else l1_importance(group)
        remove_units(group, keep_indices(importance, counts[group.name]))
        result[group.name] = (before, group.num_units)
    return result
