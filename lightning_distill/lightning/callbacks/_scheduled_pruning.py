"""What the pruning callbacks share: a schedule run at epoch or step boundaries, its saved state, and reporting."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_distill.core.pruning.schedule import PruningSchedule, ScheduleShape, ScheduleUnit
from lightning_distill.core.pruning.selection import DEFAULT_EXCLUDE, check_patterns


class ScheduledPruning(Callback):
    """Runs :meth:`_prune` at each pruning point of a :class:`PruningSchedule` (see there for the arguments)."""

    def __init__(
        self,
        final_sparsity: float,
        start: int,
        end: int | None,
        unit: ScheduleUnit,
        frequency: int,
        schedule: ScheduleShape,
        initial_sparsity: float,
        include: Sequence[str] | None,
        exclude: Sequence[str] | None,
        verbose: bool,
    ) -> None:
        super().__init__()
        self.schedule = PruningSchedule(
            final_sparsity=final_sparsity,
            start=start,
            end=end,
            unit=unit,
            frequency=frequency,
            shape=schedule,
            initial_sparsity=initial_sparsity,
        )
        check_patterns("include", include)
        check_patterns("exclude", exclude)
        self.include = list(include) if include is not None else ["*"]
        self.exclude = list(exclude) if exclude is not None else list(DEFAULT_EXCLUDE)
        self.verbose = verbose
        self.last_point: int | None = None
        self.history: list[dict[str, Any]] = []
        self.pruned: list[str] = []
        self.skipped: dict[str, str] = {}
        self._types: dict[str, str] = {}

    @property
    @override
    def state_key(self) -> str:
        # Not keyed by the schedule: a run resumed with a longer schedule keeps its masks and position.
        return self._generate_state_key(include=self.include, exclude=self.exclude)

    def _start_fit(self, trainer: pl.Trainer) -> None:
        """Check the schedule against the run and forget any earlier fit (a resumed one reloads it afterwards)."""
        self._check_fits_run(trainer)
        self.last_point = None
        self.history = []

    def _check_fits_run(self, trainer: pl.Trainer) -> None:
        last = self.schedule.last
        if self.schedule.unit == "epoch" and trainer.max_epochs is not None and trainer.max_epochs >= 0:
            if last >= trainer.max_epochs:
                raise ValueError(
                    f"the pruning schedule ends at epoch {last} (end={self.schedule.end}, start={self.schedule.start}) "
                    f"but the run has epochs 0..{trainer.max_epochs - 1} (trainer.max_epochs={trainer.max_epochs}); "
                    "lower end or raise max_epochs"
                )
        if self.schedule.unit == "step" and trainer.max_steps is not None and trainer.max_steps > 0:
            if last >= trainer.max_steps:
                raise ValueError(
                    f"the pruning schedule ends at step {last} but the run has steps 0..{trainer.max_steps - 1} "
                    f"(trainer.max_steps={trainer.max_steps}); lower end or raise max_steps"
                )

    def _report_selection(
        self, pl_module: pl.LightningModule, what: str, chosen: Sequence[str], skipped: dict[str, str]
    ) -> None:
        """Record (in ``self.pruned`` and ``self.skipped``) and print what is pruned and what is left alone, and why."""
        self.pruned, self.skipped = list(chosen), dict(skipped)
        self._types = {name: type(module).__name__ for name, module in pl_module.named_modules()}
        if not self.verbose:
            return
        lines = [f"{type(self).__name__}: pruning {len(chosen)} {what}: {', '.join(chosen)}"]
        lines += [f"  skipped {name} ({self._types.get(name, '?')}): {reason}" for name, reason in skipped.items()]
        rank_zero_info("\n".join(lines))

    def summary(self) -> list[dict[str, Any]]:
        """Per layer, for the last fit: what was pruned (``status="pruned"``), or why it was left (``"skipped"``).

        Every row has ``layer`` (module name), ``type`` (module class), ``status`` and ``reason`` (``None`` when
        pruned); pruned rows add what changed (see the subclass). Printed at the end of fit when ``verbose``.
        """
        skipped = [
            {"layer": name, "type": self._types.get(name), "status": "skipped", "reason": reason}
            for name, reason in self.skipped.items()
        ]
        return self._pruned_rows() + skipped

    def _pruned_rows(self) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _describe(self, row: dict[str, Any]) -> str:
        """One pruned row of :meth:`summary` as text."""
        raise NotImplementedError

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.verbose:
            return
        rows = self.summary()
        lines = [f"{type(self).__name__} summary ({len(self.pruned)} pruned, {len(self.skipped)} skipped):"]
        for row in rows:
            if row["status"] == "pruned":
                lines.append(f"  pruned  {row['layer']} ({row['type']}): {self._describe(row)}")
            else:
                lines.append(f"  skipped {row['layer']} ({row['type']}): {row['reason']}")
        rank_zero_info("\n".join(lines))

    def _maybe_prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, t: int) -> None:
        point = self.schedule.point_at(t)
        if point is None or (self.last_point is not None and point <= self.last_point):
            return
        target = self.schedule.sparsity_at(point)
        metrics = self._prune(trainer, pl_module, target)
        self.last_point = point
        self.history.append({"point": point, "unit": self.schedule.unit, "target": target, **metrics})
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=trainer.global_step)
        if self.verbose:
            summary = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k.count("/") <= 1)
            rank_zero_info(f"{type(self).__name__} at {self.schedule.unit} {point}: target {target:.4f}; {summary}")

    def _prune(self, trainer: pl.Trainer, pl_module: pl.LightningModule, target: float) -> dict[str, float]:
        raise NotImplementedError

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.schedule.unit == "epoch":
            self._maybe_prune(trainer, pl_module, trainer.current_epoch)

    @override
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.schedule.unit == "step":
            self._maybe_prune(trainer, pl_module, trainer.global_step)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"last_point": self.last_point, "history": list(self.history)}

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_point = state_dict["last_point"]
        self.history = list(state_dict.get("history", []))
