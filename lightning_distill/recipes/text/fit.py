"""Running a fit of a text recipe: a YAML config loaded as a dict, changed as data, and handed to the LightningCLI.

The CLI parses the dict as it parses a config file (``parser.parse_object``): the same type checks and defaults, and the
same links of the data module's ``num_classes`` and ``id2label`` into the models. Values stay Python values (a None
is None, a float a float), rather than strings on a command line.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from torch import nn

from lightning_distill.recipes.text.settings import TextRecipeSettings

if TYPE_CHECKING:
    from lightning_distill.lightning.cli import DistillCLI

__all__ = [
    "PRUNING_POINTS",
    "build_fit",
    "checkpoint_callback",
    "gradual_pruning",
    "init_args",
    "load_config",
    "run_fit",
    "train_batches",
    "with_trainer",
]

PRUNING_POINTS = 12


def load_config(path: str | Path) -> dict[str, Any]:
    """A LightningCLI config file as a dict (a fresh copy at every call, so changes never leak into another fit)."""
    import yaml

    config = yaml.safe_load(Path(path).read_text())
    if not isinstance(config, dict) or not {"model", "data"} <= set(config):
        raise ValueError(f"{path} is not a complete LightningCLI config: it needs 'model' and 'data' sections")
    return config


def init_args(config: dict[str, Any], *path: str) -> dict[str, Any]:
    """The ``init_args`` of the class at ``path`` (``"model", "student"`` is ``model.init_args.student``), to change.

    Raises:
        ValueError: the config has no ``class_path`` at ``path``; the message names it.
    """
    node: Any = config
    for depth, key in enumerate(path):
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict) or "class_path" not in node:
            where = ".init_args.".join(path[: depth + 1])
            raise ValueError(f"the config has no class_path/init_args at {where}, which the recipe sets")
        node = node.setdefault("init_args", {})
    return node


def checkpoint_callback(folder: Path) -> dict[str, Any]:
    """The ``ModelCheckpoint`` of every fit: the best ``val/acc`` as ``<folder>/checkpoints/best.ckpt``."""
    return {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {
            "monitor": "val/acc",
            "mode": "max",
            "dirpath": str(folder / "checkpoints"),
            "filename": "best",
            "enable_version_counter": False,
        },
    }


def with_trainer(
    config: dict[str, Any],
    settings: TextRecipeSettings,
    folder: Path,
    epochs: int | None,
    callbacks: Sequence[dict[str, Any]] = (),
) -> dict[str, Any]:
    """``config`` with its trainer writing into ``folder``: logs, the best checkpoint, epochs and batch limits.

    The config's own callbacks are replaced: its ``ModelCheckpoint`` points at the config's folder, not the recipe's.
    """
    config = copy.deepcopy(config)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    trainer["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(folder), "name": "logs"},
    }
    trainer["callbacks"] = [checkpoint_callback(folder), *callbacks]
    if epochs is not None:
        trainer["max_epochs"] = epochs
    for name in ("limit_train_batches", "limit_val_batches"):
        if getattr(settings, name) is not None:
            trainer[name] = getattr(settings, name)
    return config


def build_fit(config: dict[str, Any]) -> DistillCLI:
    """The CLI with the config's trainer, LightningModule and data module built (data links applied), not run."""
    from lightning_distill.lightning.cli import cli_main

    return cli_main(config, run=False)


def run_fit(
    config: dict[str, Any], what: str, keep: Literal["best", "last"] = "best"
) -> tuple[DistillCLI, nn.Module, dict[str, Any]]:
    """``lightning-distill fit`` of ``config`` (named ``what`` in errors).

    Args:
        keep: ``"best"``: the model gets the weights of the best checkpoint (by ``val/acc``); ``"last"``: the weights
            the fit ended with (the prune step: an earlier, better-scoring epoch may not be fully pruned yet).

    Returns:
        The CLI, its deployable model (``student`` or ``model``) with the kept weights, and the best checkpoint's path
        and score (and the last ``val/acc`` with ``keep="last"``).
    """
    from lightning_distill.lightning.cli import cli_main
    from lightning_distill.lightning.modules.deployable import deployable_model, load_deployable

    cli = cli_main({"subcommand": "fit", "fit": config})
    checkpoint = cli.trainer.checkpoint_callback
    if checkpoint is None or not checkpoint.best_model_path:
        raise RuntimeError(
            f"the fit of {what} saved no checkpoint under {checkpoint and checkpoint.dirpath} (no val/acc?)"
        )
    result = {"checkpoint": checkpoint.best_model_path, "best_val_acc": float(checkpoint.best_model_score)}
    if keep == "last":
        last = {"last_val_acc": float(cli.trainer.callback_metrics["val/acc"])}
        return cli, deployable_model(cli.model), {**result, **last}
    return cli, load_deployable(cli.model, checkpoint.best_model_path), result


def train_batches(data: Any) -> int:
    """Optimizer steps per epoch of ``data``'s training set."""
    data.setup("fit")
    return len(data.train_dataloader())


def gradual_pruning(settings: TextRecipeSettings, batches_per_epoch: int) -> dict[str, Any]:
    """The prune step's ``StructuredPruning``: Taylor importance, :data:`PRUNING_POINTS` cubic steps in the first half
    of the optimizer steps (fewer when there are fewer than ``2 * PRUNING_POINTS`` steps).

    On CLINC150 (3-layer MiniLM student, half the heads and FFN neurons) this schedule with 8 epochs of distillation
    kept more test accuracy than one-shot L1 pruning with 5 epochs of recovery (``benchmarks/pruning_recovery.py``;
    figures in ``docs/results.md``).
    """
    limit = settings.limit_train_batches
    if isinstance(limit, int) or (limit is not None and limit > 1):
        batches_per_epoch = min(batches_per_epoch, int(limit))
    elif limit is not None:
        batches_per_epoch = max(1, int(batches_per_epoch * limit))
    total = settings.prune_epochs * batches_per_epoch
    if total < 2:
        raise ValueError(
            f"the prune step has {total} optimizer step(s); gradual pruning needs at least 2 (Taylor scores are "
            "gathered before the first point): raise --prune-epochs or --limit-train-batches"
        )
    half = total // 2
    points = min(PRUNING_POINTS, half)  # fewer points on a very short run, so the schedule ends inside it
    frequency = half // points
    return {
        "class_path": "lightning_distill.lightning.callbacks.StructuredPruning",
        "init_args": {
            "final_sparsity": settings.sparsity,
            "start": frequency,
            "end": frequency * points,
            "unit": "step",
            "frequency": frequency,
            "schedule": "cubic",
            "importance": settings.prune_importance,
            "include": ["student.*"],
        },
    }
