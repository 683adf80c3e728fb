"""The teacher's sanity check before distillation: which validation data to measure it on, and its accuracy there."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import Any, NamedTuple

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import CombinedLoader, rank_zero_info, rank_zero_warn

from lightning_distill.core.batch import batch_labels, model_num_classes
from lightning_distill.lightning.modules._finite import check_teacher_logits


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


class TeacherMeasure(NamedTuple):
    """The teacher's accuracy over the validation loaders (``None`` without an example), and its logits' width."""

    accuracy: float | None
    logit_classes: int | None


def teacher_accuracy(module: pl.LightningModule, loaders: Iterable[Iterable]) -> TeacherMeasure:
    """Accuracy of the teacher over every batch of ``loaders``, and the last dimension of its logits (the classes it
    predicts). Non-finite teacher logits raise a ValueError naming the batch and the teacher (or the non-finite inputs).

    Through ``module.eval_teacher_logits``, so the first validation pass of the fit reuses these logits."""
    correct = total = 0
    logit_classes = None
    with torch.no_grad():
        for number, loader in enumerate(loaders):
            for batch_idx, batch in enumerate(loader):
                batch = module.transfer_batch_to_device(batch, module.device, 0)
                labels = batch_labels(batch)
                logits = module.eval_teacher_logits(batch)
                where = f"the teacher's check before distillation (validation loader {number}, batch {batch_idx})"
                check_teacher_logits(module, batch, logits, where)
                logit_classes = int(logits.shape[-1])
                correct += int((logits.argmax(-1) == labels).sum())
                total += int(labels.numel())
    return TeacherMeasure(correct / total if total else None, logit_classes)


def check_checkpoint_on_every_rank(missing_here: bool, checkpoint: str | None) -> None:
    """Fail on every process, naming the ranks, when some process found no ``teacher_checkpoint`` file."""
    missing = [missing_here]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        missing = [False] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(missing, missing_here)
    if any(missing):
        ranks = [rank for rank, flag in enumerate(missing) if flag]
        raise FileNotFoundError(
            f"teacher_checkpoint {checkpoint!r} is missing on rank(s) {ranks} of "
            f"{len(missing)}; every process loads the teacher, so put the checkpoint on storage all nodes see "
            "(or copy it to each node) before launching"
        )


def report_teacher_accuracy(module: pl.LightningModule, loaders: list[Iterable]) -> float | None:
    """Measure the teacher on ``loaders``, log and print it, and warn when it is near chance; its accuracy."""
    accuracy, logit_classes = teacher_accuracy(module, loaders)
    if accuracy is None:
        rank_zero_info("teacher sanity check skipped (no teacher/val_acc before distillation): no validation example")
        return None
    if module.logger is not None:
        module.logger.log_metrics({"teacher/val_acc": accuracy}, step=0)
    rank_zero_info(f"teacher validation accuracy before distillation: {accuracy:.4f}")
    # A plain CNN says its class count nowhere but in the width of its logits.
    classes = module.num_classes or model_num_classes(module.teacher) or logit_classes
    if classes and accuracy < 2.0 / classes:
        rank_zero_warn(
            f"the teacher's validation accuracy is {accuracy:.4f}, close to chance for {classes} "
            "classes: is teacher_checkpoint the trained teacher?"
        )
    return accuracy


def launched_as_one_of_several_processes() -> bool:
    """Whether a launcher (Lightning's DDP launcher, torchrun, SLURM) started this process as one rank of several."""
    return any(name in os.environ for name in ("LOCAL_RANK", "RANK", "SLURM_PROCID")) and (
        int(os.environ.get("WORLD_SIZE", "2")) > 1
    )


def expect_eval_teacher(module: pl.LightningModule) -> None:
    """Silence Lightning's "Found N module(s) in eval mode" warning at fit start when the only modules in eval mode
    are the frozen teacher's (on purpose), and say so once in the log instead; any other module in eval mode still
    warns, with the count Lightning gives."""
    in_eval = [name for name, sub in module.named_modules() if not sub.training]
    if in_eval and all(name == "teacher" or name.startswith("teacher.") for name in in_eval):
        warnings.filterwarnings("ignore", message=rf"Found {len(in_eval)} module\(s\) in eval mode at the start")
        rank_zero_info(f"the frozen teacher's {len(in_eval)} module(s) stay in eval mode during the fit, on purpose")
