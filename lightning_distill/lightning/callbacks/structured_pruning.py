"""Structured pruning on a schedule: whole channels, neurons and attention heads go, so the model really shrinks."""

from __future__ import annotations

from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle
from typing_extensions import override

from lightning_distill.core.batch import model_inputs
from lightning_distill.core.pruning.graph import UNIT_TYPES, UnitGroup
from lightning_distill.core.pruning.importance import l1_importance, taylor_importance
from lightning_distill.core.pruning.serialization import resize_to_state_dict
from lightning_distill.core.pruning.structured import (
    describe_skipped,
    find_unit_groups,
    keep_indices,
    remove_units,
    slice_optimizer_states,
    units_to_keep,
)
from lightning_distill.lightning.callbacks._scheduled_pruning import ScheduledPruning

_TRACE_EXAMPLES = 2  # examples of the first training batch the network is traced with


class StructuredPruning(ScheduledPruning):
    """Removes the least important channels, neurons and attention heads on a schedule and rewires their neighbours.

    Unit groups are found by one dependency analysis of the network, traced on the first examples of the first
    training batch (see :mod:`lightning_distill.core.pruning.graph`): convolution channels (with their BatchNorm,
    residual
    additions, concatenations, grouped and depthwise convolutions), Linear neurons (MLPs, transformer feed-forward
    blocks) and attention heads of Hugging Face encoders. Groups are named after their first layer (heads: after the
    attention module) and chosen by ``include``/``exclude``. The first batch comes before any pruning point (pruning
    at epoch ``n`` happens before its first optimizer step). At each pruning point every chosen group is cut down to
    ``units - round(sparsity * original units)`` units, least important first. The parameters keep their identity
    (their data is replaced), and the optimizer's per-parameter states are cut the same way, so training and the
    learning-rate schedule go on without a restart.

    Checkpoints hold the smaller weights. ``ClassifierModule`` and ``DistillationModule`` load them into a freshly
    built model by themselves (``validate``/``test(ckpt_path=...)`` need no callback); for a LightningModule of your
    own, keep this callback in the trainer: it shrinks the model's Linears to the checkpoint's shapes when the state
    dict is loaded. To deploy, save the network with :func:`lightning_distill.core.pruning.save_pruned`.

    Logged at each pruning point: ``pruning/parameters`` (of the LightningModule's trainable parameters),
    ``pruning/units/<group>`` and ``pruning/sparsity`` (fraction of the chosen units removed). :meth:`summary` lists,
    per group, the units removed and the resulting shapes, and every layer left alone with the reason (e.g. "its
    outputs are the model's outputs", "excluded by pattern 'teacher.*'", "frozen").

    Args:
        final_sparsity: Fraction of each group's units removed at the end of the schedule, in [0, 1).
        start: First pruning point (epoch or optimizer step). With ``importance="taylor"`` it must be > 0 so scores
            are gathered before the first pruning.
        end: Last pruning point; default ``start`` (one shot). Must be before ``trainer.max_epochs`` (or ``max_steps``).
        unit: ``"epoch"`` (prune at the start of the epoch) or ``"step"`` (prune before the optimizer step).
        frequency: Epochs or steps between pruning points (fine-tuning in between).
        schedule: Growth of sparsity over the points: ``"constant"``, ``"linear"`` or ``"cubic"`` (Zhu and Gupta).
        initial_sparsity: Sparsity the schedule grows from, in [0, ``final_sparsity``].
        importance: ``"l1"`` (weight norm of each unit) or ``"taylor"`` (``|sum w * grad|`` summed over the training
            batches since the last pruning point).
        unit_types: Which units to remove: ``["channels", "neurons", "heads"]`` (default) or some of them.
        include: Glob patterns of group names to prune; default every group.
        exclude: Glob patterns of group names never pruned; default ``["teacher.*", "*.teacher.*"]``.
        verbose: Print which groups are pruned and which layers are skipped (and why) in setup, sizes at each point,
            and the per-layer :meth:`summary` at the end of fit.
    """

    def __init__(
        self,
        final_sparsity: float = 0.5,
        start: int = 0,
        end: int | None = None,
        unit: Literal["epoch", "step"] = "epoch",
        frequency: int = 1,
        schedule: Literal["constant", "linear", "cubic"] = "cubic",
        initial_sparsity: float = 0.0,
        importance: Literal["l1", "taylor"] = "l1",
        unit_types: list[Literal["channels", "neurons", "heads"]] | None = None,
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            final_sparsity, start, end, unit, frequency, schedule, initial_sparsity, include, exclude, verbose
        )
        if importance not in ("l1", "taylor"):
            raise ValueError(f"importance must be 'l1' or 'taylor', got {importance!r}")
        if importance == "taylor" and start == 0:
            raise ValueError(
                "importance='taylor' needs gradients from training before the first pruning point, so start must be "
                "> 0, got start=0; use importance='l1' to prune before training"
            )
        self.unit_types = list(unit_types) if unit_types is not None else list(UNIT_TYPES)
        if not self.unit_types or any(t not in UNIT_TYPES for t in self.unit_types):
            raise ValueError(f"unit_types must be a non-empty list of {list(UNIT_TYPES)}, got {unit_types!r}")
        self.importance = importance
        self.groups: list[UnitGroup] = []
        self.original_units: dict[str, int] = {}
        self.scores: dict[str, Tensor] = {}
        self._hook: RemovableHandle | None = None
        self._inputs: Any = None
        self._saved_units: dict[str, int] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hook is None:
            self._hook = pl_module.register_load_state_dict_pre_hook(_shrink_to_checkpoint)
        if stage != "fit":
            return
        self._start_fit(trainer)
        self.original_units, self.scores, self.groups, self._inputs, self._saved_units = {}, {}, [], None, {}

    def _find_groups(self, pl_module: pl.LightningModule) -> dict[str, str]:
        groups, skipped = find_unit_groups(
            pl_module, self.include, self.exclude, self.unit_types, example_inputs=self._inputs
        )
        self.groups = groups
        return skipped

    def _select(self, pl_module: pl.LightningModule, batch: Any) -> None:
        """Trace the network on the batch's first examples, choose the groups, and check the schedule fits them."""
        self._inputs = _first_examples(model_inputs(batch))
        skipped = self._find_groups(pl_module)
        if not self.groups:
            raise ValueError(
                f"include={self.include} (exclude={self.exclude}, unit_types={self.unit_types}) selects no group of "
                f"prunable units; {describe_skipped(skipped)}"
            )
        for group in self.groups:
            self.original_units.setdefault(group.name, group.num_units)
            # Fail now, not hours into training, when the schedule would empty a layer.
            units_to_keep(self.original_units[group.name], self.schedule.final_sparsity, group.name)
        current = {g.name: g.num_units for g in self.groups}
        wrong = {n: (u, current[n]) for n, u in self._saved_units.items() if n in current and u != current[n]}
        if wrong:
            raise ValueError(f"the model's unit counts do not match the checkpoint's (saved, current): {wrong}")
        described = [f"{g.name} ({self.original_units[g.name]} {g.kind})" for g in self.groups]
        self._report_selection(pl_module, "unit groups", described, skipped)

    @override
    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _pruned_rows(self) -> list[dict[str, Any]]:
        """Rows of :meth:`summary` for the pruned groups: ``kind``, ``units_before``, ``units_after``, ``removed``
        and ``shapes`` (``{Linear name: [out_features, in_features]}`` of the group's Linears now)."""
        rows = []
        for group in self.groups:
            before = self.original_units.get(group.name, group.num_units)
            rows.append(
                {
                    "layer": group.name,
                    "type": self._types.get(group.name),
                    "status": "pruned",
                    "reason": None,
                    "kind": group.kind,
                    "units_before": before,
                    "units_after": group.num_units,
                    "removed": before - group.num_units,
                    "shapes": {name: _shape(m) for name, m in group.layers.items()},
                }
            )
        return rows

    def _describe(self, row: dict[str, Any]) -> str:
        shapes = ", ".join(f"{name} {shape}" for name, shape in row["shapes"].items())
        return f"{row['removed']} of {row['units_before']} {row['kind']} removed, {row['units_after']} left ({shapes})"

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, target: float) -> dict[str, float]:
        records = []
        for group in self.groups:
            keep = units_to_keep(self.original_units[group.name], target, group.name)
            if keep >= group.num_units:
                continue
            scores = self.scores.get(group.name) if self.importance == "taylor" else None
            if scores is None:
                scores = l1_importance(group)
            records += remove_units(group, keep_indices(scores, keep))
        slice_optimizer_states(trainer.optimizers, records)
        self.scores = {}
        self._find_groups(pl_module)  # the graph of the smaller network
        return self._measure(pl_module)

    def _measure(self, pl_module: pl.LightningModule) -> dict[str, float]:
        original = sum(self.original_units.values())
        current = sum(g.num_units for g in self.groups)
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        metrics = {"pruning/parameters": float(trainable), "pruning/sparsity": 1.0 - current / max(1, original)}
        metrics.update({f"pruning/units/{g.name}": float(g.num_units) for g in self.groups})
        return metrics

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pass  # epoch points are pruned at the epoch's first batch, whose inputs trace the network

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self._inputs is None:
            self._select(pl_module, batch)
        t = trainer.current_epoch if self.schedule.unit == "epoch" else trainer.global_step
        self._maybe_prune(trainer, pl_module, t)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.importance != "taylor" or (self.last_point is not None and self.last_point >= self.schedule.last):
            return
        for group in self.groups:
            score = taylor_importance(group)
            previous = self.scores.get(group.name)
            self.scores[group.name] = score if previous is None else previous + score

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            **super().state_dict(),
            "original_units": dict(self.original_units),
            "units": {g.name: g.num_units for g in self.groups},
            "scores": {n: s.cpu() for n, s in self.scores.items()},
        }

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.original_units = dict(state_dict.get("original_units", {}))
        self.scores = dict(state_dict.get("scores", {}))
        self._saved_units = dict(state_dict.get("units", {}))  # checked once the first batch traces the network


def _first_examples(inputs: Any) -> Any:
    """The first examples of a batch's inputs: tracing needs the shapes, not the whole batch."""
    if isinstance(inputs, Tensor):
        return inputs[:_TRACE_EXAMPLES].detach()
    if isinstance(inputs, dict):
        return {k: _first_examples(v) for k, v in inputs.items()}
    if isinstance(inputs, (tuple, list)):
        return type(inputs)(_first_examples(v) for v in inputs)
    return inputs


def _shape(module: nn.Module) -> list[int]:
    """``[out, in]`` of a Linear or convolution, ``[features]`` of a normalisation layer."""
    if isinstance(module, nn.Linear):
        return [module.out_features, module.in_features]
    if hasattr(module, "out_channels"):
        return [module.out_channels, module.in_channels]
    return [int(p) for p in getattr(module, "weight", torch.empty(0)).shape[:1]]


def _shrink_to_checkpoint(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """Before a checkpoint of a pruned model loads, give the freshly built model's Linears the checkpoint's shapes."""
    resize_to_state_dict(module, state_dict, prefix)
