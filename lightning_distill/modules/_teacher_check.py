"""The teacher's sanity check before distillation: which validation data to measure it on, and its accuracy there."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader

from lightning_distill.batch import batch_labels


def validation_loaders(trainer: pl.Trainer) -> tuple[list[Iterable], str | None]:
    """The validation loaders of this fit, or ``([], why there are none)``.

    With a data module its ``val_dataloader()`` (the whole validation set on every process); with plain loaders
    (``trainer.fit(module, train_loader, val_loader)``) the trainer's own ``val_dataloaders``.
    """
    if trainer.fast_dev_run:
        return [], "fast_dev_run is on"
    if trainer.limit_val_batches == 0:
        return [], "limit_val_batches=0 turns validation off"
    if not trainer.enable_validation:
        return [], (
            "the fit has no validation data; pass val_dataloaders to trainer.fit, or use a data module with a "
            "val_dataloader"
        )
    datamodule = trainer.datamodule
    if datamodule is not None:
        loaders: Any = datamodule.val_dataloader()
    else:
        if trainer.val_dataloaders is None:
            # Lightning sets them up before on_train_start only when this epoch validates; do as its fit loop does.
            trainer.validating = True
            trainer.fit_loop.epoch_loop.val_loop.setup_data()
            trainer.training = True
        loaders = trainer.val_dataloaders
    if loaders is None:
        return [], "the trainer has no validation dataloader"
    return list(CombinedLoader(loaders, "sequential").flattened), None


def teacher_accuracy(module: pl.LightningModule, loaders: Iterable[Iterable]) -> float | None:
    """Accuracy of ``module.teacher_logits`` over every batch of ``loaders``; ``None`` when they hold no example."""
    correct = total = 0
    with torch.no_grad():
        for loader in loaders:
            for batch in loader:
                batch = module.transfer_batch_to_device(batch, module.device, 0)
                labels = batch_labels(batch)
                correct += int((module.teacher_logits(batch).argmax(-1) == labels).sum())
                total += int(labels.numel())
    return correct / total if total else None
