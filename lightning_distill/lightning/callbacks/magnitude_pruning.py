"""Unstructured L1 magnitude pruning on a schedule, with masks that keep pruned weights at exactly zero."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor, nn
from typing_extensions import override

from lightning_distill.core.pruning.selection import LayerType, check_layer_types, select_weights
from lightning_distill.core.pruning.unstructured import apply_masks, magnitude_masks, sparsity, sparsity_report
from lightning_distill.lightning.callbacks._scheduled_pruning import ScheduledPruning


class MagnitudePruning(ScheduledPruning):
    """Prunes the smallest weights of the chosen layers to a target sparsity, in one shot or gradually.

    At each pruning point of the schedule (see :class:`~lightning_distill.core.pruning.PruningSchedule`) a boolean mask
    per weight is computed from ``|w|``; masked weights are set to zero, their gradients are zeroed before every
    optimizer step and the weights are zeroed again after it, so they stay exactly zero while the rest fine-tunes.
    Masks only grow: a pruned weight is never revived. At the end of fit the zeros are final (the model's
    ``state_dict`` keeps its usual keys throughout, so checkpoints load into an unpruned model). The masks and the
    schedule's position are saved in checkpoints, so a resumed run continues exactly.

    Unstructured sparsity does not make dense kernels faster or the saved model smaller; use
    :class:`StructuredPruning` for that.

    Logged at each pruning point: ``pruning/sparsity`` (measured over all pruned layers) and
    ``pruning/sparsity/<parameter name>``. :meth:`summary` lists, per layer, the weights masked and the resulting
    sparsity, and every layer left alone with the reason (a Conv2d under the default ``layer_types`` included).

    Args:
        final_sparsity: Fraction of the chosen weights pruned at the end of the schedule, in [0, 1).
        start: First pruning point (epoch or optimizer step).
        end: Last pruning point, where ``final_sparsity`` is reached; default ``start`` (one shot). Must be before
            ``trainer.max_epochs`` (or ``max_steps``).
        unit: ``"epoch"`` (prune at the start of the epoch) or ``"step"`` (prune before the optimizer step).
        frequency: Epochs or steps between pruning points (iterative pruning, fine-tuning in between).
        schedule: Growth of sparsity over the points: ``"constant"``, ``"linear"`` or ``"cubic"`` (Zhu and Gupta).
        initial_sparsity: Sparsity the schedule grows from, in [0, ``final_sparsity``].
        scope: ``"global"`` ranks all chosen weights together; ``"layer"`` prunes each layer to the same sparsity.
        include: Glob patterns of module names to prune (``["student.*"]``); default every module.
        exclude: Glob patterns of module names never pruned; default ``["teacher.*", "*.teacher.*"]``.
        layer_types: Module types whose ``weight`` is pruned; default ``["Linear"]``. Layers of the other types
            (a Conv2d under the default) are listed as skipped, with the reason.
        verbose: Print which layers are pruned and skipped (and why) in setup, the sparsity at each pruning point, and
            the per-layer :meth:`summary` at the end of fit.
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
        scope: Literal["global", "layer"] = "global",
        include: list[str] | None = None,
        exclude: list[str] | None = None,
        layer_types: list[LayerType] | None = None,
        verbose: bool = True,
    ) -> None:
        super().__init__(
            final_sparsity, start, end, unit, frequency, schedule, initial_sparsity, include, exclude, verbose
        )
        if scope not in ("global", "layer"):
            raise ValueError(f"scope must be 'global' or 'layer', got {scope!r}")
        self.layer_types: Sequence[str] = list(layer_types) if layer_types is not None else ["Linear"]
        check_layer_types(self.layer_types)
        self.scope = scope
        self.masks: dict[str, Tensor] = {}
        self._weights: dict[str, nn.Parameter] = {}
        self.last_sparsity: dict[str, float] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        self._start_fit(trainer)
        self.masks = {}
        self._weights, skipped = select_weights(pl_module, self.include, self.exclude, self.layer_types)
        self._report_selection(pl_module, "weights", list(self._weights), skipped)

    def _pruned_rows(self) -> list[dict[str, Any]]:
        """Rows of :meth:`summary` for the pruned weights: ``shape``, ``weights``, ``masked`` and measured ``sparsity``.

        ``masked`` counts the weights the masks hold at zero (0 before the first pruning point); ``sparsity`` is the
        fraction of exact zeros in the weight now.
        """
        rows = []
        for name, weight in self._weights.items():
            layer = name.rsplit(".", 1)[0]
            mask = self.masks.get(name)
            rows.append(
                {
                    "layer": layer,
                    "type": self._types.get(layer),
                    "status": "pruned",
                    "reason": None,
                    "shape": list(weight.shape),
                    "weights": weight.numel(),
                    "masked": int((~mask).sum()) if mask is not None else 0,
                    "sparsity": sparsity(weight.detach()),
                }
            )
        return rows

    def _describe(self, row: dict[str, Any]) -> str:
        return (
            f"{row['masked']} of {row['weights']} weights {row['shape']} masked to zero, sparsity {row['sparsity']:.3f}"
        )

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, target: float) -> dict[str, float]:
        self.masks = magnitude_masks(self._weights, target, self.scope, self.masks)
        apply_masks(self._weights, self.masks)
        return self._measure()

    def _measure(self) -> dict[str, float]:
        report = sparsity_report({n: w.detach() for n, w in self._weights.items()})
        self.last_sparsity = report
        per_layer = {f"pruning/sparsity/{n}": v for n, v in report.items() if n != "overall"}
        return {"pruning/sparsity": report["overall"], **per_layer}

    @override
    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # After a resume the masks come from the checkpoint; the weights there are already zero, this re-asserts it.
        apply_masks(self._weights, self.masks)

    @override
    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        # Zero gradients keep optimizer moments of pruned weights from building up.
        for name, mask in self.masks.items():
            grad = self._weights[name].grad
            if grad is not None:
                grad.mul_(mask.to(device=grad.device, dtype=grad.dtype))

    @override
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        # Weight decay and momentum can still move masked weights during the step: put them back to zero.
        apply_masks(self._weights, self.masks)

    @override
    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        apply_masks(self._weights, self.masks)
        if self.masks:
            metrics = self._measure()
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "masks": {n: m.cpu() for n, m in self.masks.items()}}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        masks = state_dict.get("masks", {})
        device = {n: w.device for n, w in self._weights.items()}
        self.masks = {n: m.to(device.get(n, "cpu")) for n, m in masks.items()}
