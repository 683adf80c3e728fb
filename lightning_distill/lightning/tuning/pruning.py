"""OptunaPruning: reports a validation metric to an Optuna trial after every validation and stops pruned trials."""

from __future__ import annotations

import math
from typing import Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from typing_extensions import override

from lightning_distill.core._optional import require

optuna = require("optuna", "lightning-distill tune")


class OptunaPruning(Callback):
    """Feeds ``monitor`` to ``trial.report`` after each validation round and raises ``optuna.TrialPruned`` when the
    study's pruner says so (optuna-integration's Lightning callback, without the extra dependency).

    The step reported is the validation round (0, 1, ...), which is the epoch when validation runs once per epoch.
    The best value seen (by ``direction``) is kept in :attr:`best`, the trial's result: it is the score of the
    checkpoint a ``ModelCheckpoint`` on the same metric keeps.

    Args:
        trial: The running Optuna trial.
        monitor: Logged metric to report, e.g. ``val/acc``.
        direction: Whether larger (``maximize``) or smaller values of ``monitor`` are better.
        verbose: Print the metric after every validation round.
    """

    def __init__(
        self,
        trial: optuna.trial.Trial,
        monitor: str = "val/acc",
        direction: Literal["maximize", "minimize"] = "maximize",
        verbose: bool = True,
    ) -> None:
        super().__init__()
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
        self.trial = trial
        self.monitor = monitor
        self.direction = direction
        self.verbose = verbose
        self.rounds = 0
        self.best: float | None = None
        self.pruned_at: int | None = None

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            raise KeyError(
                f"metric {self.monitor!r} was not logged during validation; logged metrics are "
                f"{sorted(trainer.callback_metrics)}; set metric in the tune config to one of them"
            )
        value = float(value)
        step = self.rounds
        self.rounds += 1
        if math.isfinite(value) and (self.best is None or self._better(value, self.best)):
            self.best = value
        self.trial.report(value, step)
        if self.verbose:
            print(
                f"    trial {self.trial.number} epoch {trainer.current_epoch}: {self.monitor} {value:.4f}", flush=True
            )
        if self.trial.should_prune():
            self.pruned_at = step
            raise optuna.TrialPruned(
                f"trial {self.trial.number} pruned after validation round {step}: {self.monitor} {value:.4f} is "
                "worse than the median of the completed trials at the same round"
            )

    def _better(self, value: float, than: float) -> bool:
        return value > than if self.direction == "maximize" else value < than
