"""Finding the unit groups of any network through one dependency analysis (torch-pruning's ``DependencyGraph``).

The network is run once on example inputs and its autograd graph is traced (DepGraph, Fang et al., CVPR 2023). Each
set of channels that must be removed together (a convolution's output channels with their BatchNorm, the channels
summed by a residual addition, the inputs of every consumer, a concatenation's slice, a depthwise convolution's
channels) becomes one :class:`UnitGroup`, of one of three kinds:

- ``channels``: the output channels of convolutions (named after the first convolution of the group);
- ``neurons``: the outputs of Linear layers, e.g. MLP hidden neurons or a transformer's feed-forward neurons;
- ``heads``: the query/key/value rows of attention heads and the matching output-projection columns, found when the
  Linear layers of a group sit in a module with a head count (``num_attention_heads``, ``n_heads`` or ``num_heads``)
  and a head size (``attention_head_size`` or ``head_dim``); named after that module, whose head counts follow.

Left alone, with the reason: groups that reach the model's outputs, the embedding width of a transformer (its
residual stream: embeddings, layer norms and every layer's input), and Linear groups outside the transformer layers
of a model with attention (pooler, classification head).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch_pruning as tp
from torch import Tensor, nn

UnitType = Literal["channels", "neurons", "heads"]
UNIT_TYPES = ("channels", "neurons", "heads")
HEAD_COUNTS = ("num_attention_heads", "n_heads", "num_heads")
HEAD_SIZES = ("attention_head_size", "head_dim")
PRUNABLE = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)

OUTPUT_REASON = "its outputs are the model's outputs"
EMBEDDING_REASON = "it sets the embedding width (the residual stream of every transformer layer), which is kept"
OUTSIDE_REASON = "outside the transformer layers (pooler or classification head): not pruned"
EXAMPLE_HINT = (
    "pass example_inputs: what the model's forward takes, as a tensor (torch.randn(1, 3, 224, 224)), a tuple of "
    "positional arguments or a dict of keyword arguments ({'input_ids': ..., 'attention_mask': ...})"
)


@dataclass(eq=False)
class UnitGroup:
    """Units removed together, as found by the dependency graph.

    Attributes:
        name: Module name the group is known by (see the module docstring).
        kind: ``"channels"``, ``"neurons"`` or ``"heads"``.
        graph: The dependency graph the group belongs to.
        root: The layer whose output channels define the group's coordinates.
        items: ``(module, is_output_side, layer indices, root indices)`` for every layer the group touches.
        unit_of: For each root channel, the unit it belongs to (heads span several channels; grouped convolutions
            repeat each unit once per group).
        layers: Names of the Linear, convolution and normalisation layers the group resizes, in model order.
        attentions: For heads, the modules whose head counts follow the pruning.
    """

    name: str
    kind: UnitType
    graph: Any
    root: nn.Module
    items: list[tuple[Any, bool, Tensor, Tensor]]
    unit_of: Tensor
    layers: dict[str, nn.Module] = field(default_factory=dict)
    attentions: list[nn.Module] = field(default_factory=list)

    @property
    def num_units(self) -> int:
        return int(self.unit_of.max()) + 1

    @property
    def producers(self) -> list[nn.Module]:
        """The Linear and convolution layers whose outputs are the units."""
        return [m for m, out, _, _ in self.items if out and isinstance(m, PRUNABLE)]


def call_with(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a mapping, ``model(*inputs)`` for a tuple or list, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def default_example_inputs(model: nn.Module) -> Any:
    """Inputs the model can be traced with when none are given: for Hugging Face models and plain MLPs only."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    for module in model.modules():
        config = getattr(module, "config", None)
        name = getattr(module, "main_input_name", None)
        if config is None or name is None:
            continue
        if name == "pixel_values":
            size, channels = getattr(config, "image_size", 224), getattr(config, "num_channels", 3)
            size = size if isinstance(size, int) else size[0]
            return {"pixel_values": torch.randn(1, channels, size, size, device=device)}
        if name == "input_ids" and getattr(config, "vocab_size", None):
            ids = (torch.arange(8, device=device) % config.vocab_size).unsqueeze(0)
            return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    layers = [m for m in model.modules() if any(p is not None for p in m._parameters.values())]
    if layers and all(isinstance(m, (nn.Linear, nn.BatchNorm1d, nn.LayerNorm)) for m in layers):
        first = next(m for m in model.modules() if isinstance(m, nn.Linear))
        return torch.randn(2, first.in_features, device=device)
    return None


def _whole_forward(model: nn.Module, inputs: Any) -> Any:
    """A LightningModule's forward on the batch's inputs, or its ``forward_for_pruning`` where it has one (outputs
    beyond the logits whose widths pruning must follow, e.g. the projections of feature losses)."""
    return getattr(model, "forward_for_pruning", model)(inputs)


def build_graph(model: nn.Module, example_inputs: Any, what: str = "the model", whole_input: bool = False) -> Any:
    """Trace ``model`` on ``example_inputs`` into a ``tp.DependencyGraph``; its train/eval modes and flags are kept.

    With ``whole_input`` the inputs are passed as one argument (``forward(self, inputs)`` of a LightningModule, or its
    ``forward_for_pruning(inputs)``).
    """
    modes = {m: m.training for m in model.modules()}
    flags = {p: p.requires_grad for p in model.parameters()}
    try:
        for p in flags:
            p.requires_grad_(True)  # frozen layers leave no autograd trace otherwise
        with torch.enable_grad():
            return tp.DependencyGraph().build_dependency(
                model,
                example_inputs=example_inputs,
                forward_fn=_whole_forward if whole_input else call_with,
                verbose=False,
            )
    except Exception as error:
        raise ValueError(
            f"could not trace {what} ({type(model).__name__}) with the example inputs for structured pruning "
            f"({type(error).__name__}: {str(error).strip()[:300]}); {EXAMPLE_HINT}"
        ) from error
    finally:
        for p, flag in flags.items():
            p.requires_grad_(flag)
        for m, mode in modes.items():
            m.training = mode


def _kind_and_attentions(root: nn.Module, producers: list[nn.Module], parents: dict[nn.Module, nn.Module]) -> tuple:
    """``("heads", attention modules, head size)`` for attention projections, else channels or neurons."""
    linears = [m for m in producers if isinstance(m, nn.Linear)]
    owners = [parents.get(m) for m in linears]
    if len(linears) >= 2 and len(set(map(id, owners))) == 1 and owners[0] is not None:
        owner = owners[0]
        size = next((getattr(owner, a) for a in HEAD_SIZES if isinstance(getattr(owner, a, None), int)), None)
        heads = next((a for a in HEAD_COUNTS if isinstance(getattr(owner, a, None), int)), None)
        if size and heads:
            return "heads", [owner], size
    return ("channels" if isinstance(root, _CONV) else "neurons"), [], 1


def _unit_index(kind: str, channels: int, unit_size: int, channel_groups: int) -> Tensor:
    positions = torch.arange(channels)
    if kind == "heads":
        return positions // unit_size
    if channel_groups > 1:  # a grouped convolution loses the same channel of every group
        return positions % (channels // channel_groups)
    return positions


def _transformer_layers(attentions: Sequence[str], modules: dict[str, nn.Module]) -> list[str]:
    """The item of a ``ModuleList`` holding each attention module (``bert.encoder.layer.3``)."""
    layers = []
    for name in attentions:
        parts = name.split(".")
        for i in range(len(parts) - 1, 0, -1):
            if isinstance(modules.get(".".join(parts[: i - 1]) if i > 1 else ""), nn.ModuleList):
                layers.append(".".join(parts[:i]))
                break
    return layers


def graph_groups(graph: Any, model: nn.Module, prefix: str = "") -> tuple[list[UnitGroup], dict[str, str]]:
    """Every group of ``graph`` (traced from ``model``) as a :class:`UnitGroup`, and the groups left alone with why."""
    names = {m: n for n, m in model.named_modules()}
    modules = dict(model.named_modules())
    order = {m: i for i, m in enumerate(model.modules())}
    parents = {child: parent for parent in model.modules() for child in parent.children()}
    groups: list[UnitGroup] = []
    skipped: dict[str, str] = {}
    for full in graph.get_all_groups(root_module_types=PRUNABLE):
        root = full[0].dep.target.module
        items, reason = [], None
        for item in full:
            dep = item.dep
            target, out = dep.target.module, graph.is_out_channel_pruning_fn(dep.handler)
            if dep.target.type == tp.ops.OPTYPE.OUTPUT or (out and target in names and not dep.target.outputs):
                reason = reason or OUTPUT_REASON  # an output op, or a layer whose result nothing else uses
            elif isinstance(target, (nn.Embedding, nn.Parameter)):
                reason = EMBEDDING_REASON
            if not out and isinstance(target, _CONV) and 1 < target.groups and len(item.idxs) != target.in_channels:
                reason = f"feeds part of grouped convolution {prefix}{names.get(target)}, whose groups would differ"
            if isinstance(target, nn.Parameter) or target in names:
                items.append((target, out, torch.as_tensor(item.idxs), torch.as_tensor(item.root_idxs)))
        producers = sorted((m for m, out, _, _ in items if out and isinstance(m, PRUNABLE)), key=order.get)
        name = prefix + names[producers[0] if producers else root]
        if reason is not None:
            skipped[name] = reason
            continue
        kind, attentions, unit_size = _kind_and_attentions(root, producers, parents)
        if kind == "heads":
            name = prefix + names[attentions[0]]
        groups_of = [m.groups for m, _, _, _ in items if isinstance(m, _CONV) and 1 < m.groups < m.out_channels]
        groups_of += [m.num_groups for m, _, _, _ in items if isinstance(m, nn.GroupNorm)]
        channels = graph.get_out_channels(root)
        ordered = sorted((m for m, _, _, _ in items if m in names), key=order.get)
        layers = {prefix + names[m]: m for m in ordered}
        groups.append(
            UnitGroup(
                name,
                kind,
                graph,
                root,
                items,
                _unit_index(kind, channels, unit_size, max(groups_of, default=1)),
                layers,
                attentions,
            )
        )
    groups.sort(key=lambda g: min(order[m] for m in g.layers.values()))
    attention_names = [names[a] for g in groups for a in g.attentions]
    if attention_names:
        blocks = _transformer_layers(attention_names, modules)
        for group in [g for g in groups if g.kind == "neurons"]:
            inside = all(any(n[len(prefix) :].startswith(b + ".") for b in blocks) for n in group.layers)
            if not inside:
                skipped[group.name] = OUTSIDE_REASON
                groups.remove(group)
    return groups, skipped
