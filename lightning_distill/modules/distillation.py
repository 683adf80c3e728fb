"""Knowledge distillation: a frozen teacher trains a student through soft targets."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import Tensor, nn
from typing_extensions import override

from lightning_distill.losses.kd import KDLoss, agreement
from lightning_distill.modules._batch import (
    batch_labels,
    batch_size,
    logits_of,
    model_num_classes,
    student_inputs,
    teacher_inputs,
)
from lightning_distill.modules.classifier import build_optimizer, check_num_classes
from lightning_distill.modules.teacher_weights import load_teacher_weights

TEACHER_KEY = "teacher."


class DistillationModule(pl.LightningModule):
    """Trains ``student`` on a mix of the teacher's soft targets and the labels.

    The teacher is frozen (no gradients, not in the optimizer), stays in eval mode for the whole fit even though
    Lightning calls ``.train()`` on the module every epoch, and is left out of checkpoints: a checkpoint of this
    module holds the student alone (under ``student.``). Before training starts the teacher's validation accuracy is
    logged as ``teacher/val_acc`` so a broken teacher is caught before hours of distillation.

    Args:
        student: The model being trained.
        teacher: The trained model whose outputs the student imitates.
        teacher_checkpoint: Optional file with the teacher's trained weights: a checkpoint of
            :class:`ClassifierModule` or :class:`DistillationModule`, or a plain ``state_dict``. Leave it out when the
            teacher arrives trained (e.g. a Hugging Face model loaded from a fine-tuned checkpoint).
        loss: The soft/hard loss; defaults to ``KDLoss(temperature=4.0, soft_target_weight=0.7)``.
        num_classes: Classes in the data; linked from ``data.num_classes`` by the CLI and checked against both models.
        learning_rate: AdamW learning rate of the student.
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of training steps with linear warm-up, then linear decay; 0 keeps it constant.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | None = None,
        loss: KDLoss | None = None,
        num_classes: int | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
    ) -> None:
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        student_classes, teacher_classes = model_num_classes(student), model_num_classes(teacher)
        if student_classes is not None and teacher_classes is not None and student_classes != teacher_classes:
            raise ValueError(
                f"teacher has {teacher_classes} classes but the student has {student_classes}; both must predict the "
                "classes of the data module"
            )
        check_num_classes(teacher, num_classes, "teacher")
        check_num_classes(student, num_classes, "student")
        if teacher_checkpoint is not None:
            load_teacher_weights(teacher, teacher_checkpoint)
        self.save_hyperparameters(ignore=["student", "teacher", "loss"])
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.loss = loss if loss is not None else KDLoss()
        self.num_classes = num_classes
        self.teacher_val_acc: float | None = None

    # --- the teacher stays frozen, in eval mode, and out of checkpoints -------------------------------------------

    @override
    def train(self, mode: bool = True) -> DistillationModule:
        super().train(mode)
        self.teacher.eval()
        return self

    @override
    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().state_dict(*args, **kwargs)
        prefix = kwargs.get("prefix", args[1] if len(args) > 1 else "")
        for key in [k for k in state if k.startswith(prefix + TEACHER_KEY)]:
            del state[key]
        return state

    @override
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        # Checkpoints hold no teacher: keep the teacher we were built with and load the rest strictly.
        merged = dict(state_dict)
        for key, value in self.teacher.state_dict().items():
            merged.setdefault(TEACHER_KEY + key, value)
        return super().load_state_dict(merged, strict=strict, assign=assign)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for n, p in self.named_parameters() if not n.startswith(TEACHER_KEY) and p.requires_grad)

    # --- steps ----------------------------------------------------------------------------------------------------

    def forward(self, inputs: Any) -> Tensor:
        return logits_of(self.student, inputs)

    def teacher_logits(self, batch: Any) -> Tensor:
        """The teacher's logits for ``batch``, computed without gradients."""
        with torch.no_grad():
            return logits_of(self.teacher, teacher_inputs(batch)).detach()

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        labels = batch_labels(batch)
        student_logits = self(student_inputs(batch))
        teacher_logits = self.teacher_logits(batch)
        out = self.loss(student_logits, teacher_logits, labels)
        n = batch_size(batch)
        self.log("train/loss", out.loss, prog_bar=True, batch_size=n)
        self.log("train/soft_loss", out.soft, batch_size=n)
        self.log("train/hard_loss", out.hard, batch_size=n)
        self.log("train/agreement", agreement(student_logits, teacher_logits), batch_size=n)
        return out.loss

    def _eval_step(self, batch: Any, stage: str) -> None:
        labels = batch_labels(batch)
        student_logits = self(student_inputs(batch))
        teacher_logits = self.teacher_logits(batch)
        n = batch_size(batch)
        self.log(f"{stage}/loss", F.cross_entropy(student_logits, labels), batch_size=n)
        self.log(f"{stage}/acc", (student_logits.argmax(-1) == labels).float().mean(), prog_bar=True, batch_size=n)
        self.log(f"{stage}/agreement", agreement(student_logits, teacher_logits), prog_bar=True, batch_size=n)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(student_inputs(batch)).argmax(-1)

    def configure_optimizers(self) -> Any:
        return build_optimizer(
            self, self.hparams.learning_rate, self.hparams.weight_decay, self.hparams.warmup_fraction
        )

    # --- the teacher is measured once before training -------------------------------------------------------------

    def on_train_start(self) -> None:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or self.trainer.sanity_checking or self.trainer.fast_dev_run:
            return
        correct = total = 0
        with torch.no_grad():
            for batch in datamodule.val_dataloader():
                batch = self.transfer_batch_to_device(batch, self.device, 0)
                labels = batch_labels(batch)
                correct += int((self.teacher_logits(batch).argmax(-1) == labels).sum())
                total += int(labels.numel())
        if total == 0:
            return
        self.teacher_val_acc = correct / total
        if self.logger is not None:
            self.logger.log_metrics({"teacher/val_acc": self.teacher_val_acc}, step=0)
        rank_zero_info(f"teacher validation accuracy before distillation: {self.teacher_val_acc:.4f}")
        classes = self.num_classes or model_num_classes(self.teacher)
        if classes and self.teacher_val_acc < 2.0 / classes:
            rank_zero_warn(
                f"the teacher's validation accuracy is {self.teacher_val_acc:.4f}, close to chance for {classes} "
                "classes: is teacher_checkpoint the trained teacher?"
            )
