"""Knowledge-distillation loss on logits (Hinton, Vinyals and Dean, 2015)."""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor, nn


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Soft-target loss of "Distilling the Knowledge in a Neural Network" (Hinton et al., 2015).

    ``T^2 * KL(softmax(teacher / T) || softmax(student / T))``, averaged over the batch. The ``T^2`` factor keeps
    the gradient magnitude of the soft term comparable to the hard term as ``T`` changes.

    Args:
        student_logits: ``(batch, classes)`` raw student outputs.
        teacher_logits: ``(batch, classes)`` raw teacher outputs; no gradient flows into them.
        temperature: Softmax temperature ``T > 0``; larger values soften both distributions.

    Returns:
        A scalar tensor, zero when the student's logits equal the teacher's.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits have shape {tuple(student_logits.shape)} but teacher logits have shape "
            f"{tuple(teacher_logits.shape)}; both models must predict the same classes"
        )
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * temperature**2


class KDLossOutput(NamedTuple):
    """The total distillation loss and its two terms, before weighting."""

    loss: Tensor
    soft: Tensor
    hard: Tensor


def distillation_loss(
    student_logits: Tensor, teacher_logits: Tensor, labels: Tensor, temperature: float, soft_target_weight: float
) -> KDLossOutput:
    """``soft_target_weight * kd_loss + (1 - soft_target_weight) * cross_entropy(student, labels)``.

    Args:
        student_logits: ``(batch, classes)`` raw student outputs.
        teacher_logits: ``(batch, classes)`` raw teacher outputs.
        labels: ``(batch,)`` integer class labels.
        temperature: Softmax temperature of the soft term.
        soft_target_weight: Weight of the soft (teacher) term in [0, 1]; the hard (label) term gets the rest.
            0 is plain supervised training, 1 ignores the labels.
    """
    if not 0.0 <= soft_target_weight <= 1.0:
        raise ValueError(f"soft_target_weight must be in [0, 1], got {soft_target_weight}")
    soft = kd_loss(student_logits, teacher_logits, temperature)
    hard = F.cross_entropy(student_logits.float(), labels)
    return KDLossOutput(soft_target_weight * soft + (1.0 - soft_target_weight) * hard, soft, hard)


class KDLoss(nn.Module):
    """Hinton soft-target loss mixed with cross-entropy on the labels; see :func:`distillation_loss`.

    Args:
        temperature: Softmax temperature ``T > 0`` of the soft term.
        soft_target_weight: Weight of the soft (teacher) term in [0, 1]; ``1 - soft_target_weight`` weights the
            cross-entropy on the labels. Named explicitly because the literature's ``alpha`` means either term.
    """

    def __init__(self, temperature: float = 4.0, soft_target_weight: float = 0.7) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0.0 <= soft_target_weight <= 1.0:
            raise ValueError(f"soft_target_weight must be in [0, 1], got {soft_target_weight}")
        self.temperature = float(temperature)
        self.soft_target_weight = float(soft_target_weight)

    def forward(self, student_logits: Tensor, teacher_logits: Tensor, labels: Tensor) -> KDLossOutput:
        return distillation_loss(student_logits, teacher_logits, labels, self.temperature, self.soft_target_weight)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, soft_target_weight={self.soft_target_weight}"


def agreement(student_logits: Tensor, teacher_logits: Tensor) -> Tensor:
    """Fraction of examples where the student's top-1 class equals the teacher's."""
    return (student_logits.argmax(-1) == teacher_logits.argmax(-1)).float().mean()


__all__ = ["KDLoss", "KDLossOutput", "agreement", "distillation_loss", "kd_loss"]
