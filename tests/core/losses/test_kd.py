import math

import pytest
import torch
import torch.nn.functional as F

from lightning_distill.core.losses import KDLoss, agreement, distillation_loss, kd_loss


def test_soft_weight_zero_is_plain_cross_entropy() -> None:
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))
    out = KDLoss(temperature=3.0, soft_target_weight=0.0)(student, teacher, labels)
    torch.testing.assert_close(out.loss, F.cross_entropy(student, labels))


def test_kl_is_zero_when_student_equals_teacher() -> None:
    logits = torch.randn(8, 5)
    assert kd_loss(logits, logits.clone(), temperature=4.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(logits, torch.randn(8, 5), temperature=4.0).item() > 1e-3


def test_soft_term_matches_formula_with_temperature_squared() -> None:
    student, teacher, t = torch.randn(4, 3), torch.randn(4, 3), 2.5
    p_teacher = F.softmax(teacher / t, dim=-1)
    expected = (p_teacher * (p_teacher.log() - F.log_softmax(student / t, dim=-1))).sum(-1).mean() * t**2
    torch.testing.assert_close(kd_loss(student, teacher, t), expected)


def test_mix_weights_soft_and_hard_terms() -> None:
    student, teacher = torch.randn(6, 4), torch.randn(6, 4)
    labels = torch.randint(0, 4, (6,))
    out = distillation_loss(student, teacher, labels, temperature=4.0, soft_target_weight=0.7)
    torch.testing.assert_close(out.loss, 0.7 * out.soft + 0.3 * out.hard)


def test_no_gradient_reaches_teacher_logits() -> None:
    student = torch.randn(4, 3, requires_grad=True)
    teacher = torch.randn(4, 3, requires_grad=True)
    kd_loss(student, teacher, 2.0).backward()
    assert student.grad is not None and teacher.grad is None


def test_agreement() -> None:
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    b = torch.tensor([[2.0, 0.0], [3.0, 1.0], [1.0, 0.0]])
    assert math.isclose(agreement(a, b).item(), 2 / 3, rel_tol=1e-6)


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_bad_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match=r"temperature must be > 0, got"):
        KDLoss(temperature=temperature)


@pytest.mark.parametrize("weight", [-0.1, 1.5])
def test_bad_soft_target_weight(weight: float) -> None:
    with pytest.raises(ValueError, match=r"soft_target_weight must be in \[0, 1\], got"):
        KDLoss(soft_target_weight=weight)


def test_class_count_mismatch_is_named() -> None:
    with pytest.raises(ValueError, match=r"shape \(2, 3\) but teacher logits have shape \(2, 4\)"):
        kd_loss(torch.randn(2, 3), torch.randn(2, 4), 1.0)
