from pathlib import Path

import pytest
import torch
from tiny_text import INTENTS, write_bert
from torch import nn

from lightning_distill.core.models import TransformerClassifier, class_logit_offset, offset_class_logit


def _logits(rows: int = 400, classes: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, classes, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("teacher_shift", [-1.5, 0.0, 2.0])
def test_offset_makes_the_student_predict_the_class_as_often_as_the_teacher(k: int, teacher_shift: float) -> None:
    student, teacher = _logits(seed=1), _logits(seed=2)
    teacher[:, k] += teacher_shift
    offset = class_logit_offset(student, teacher, k)
    shifted = student.clone()
    shifted[:, k] += offset
    wanted = int((teacher.argmax(-1) == k).sum())
    assert int((shifted.argmax(-1) == k).sum()) == wanted
    assert wanted != int((student.argmax(-1) == k).sum())  # the case is not trivial
    # A student that predicts k more often than its teacher gets a negative offset, and the other way round.
    assert (offset < 0) == (wanted < int((student.argmax(-1) == k).sum()))


def test_offset_leaves_the_other_classes_ordered_as_they_were() -> None:
    student, teacher = _logits(seed=3), _logits(seed=4)
    teacher[:, 2] += 1.0
    shifted = student.clone()
    shifted[:, 2] += class_logit_offset(student, teacher, 2)
    changed = shifted.argmax(-1) != student.argmax(-1)
    assert changed.any()
    assert (shifted.argmax(-1)[changed] == 2).all()  # a raised class only takes rows, it never moves the others


def test_offset_when_the_teacher_never_or_always_predicts_the_class() -> None:
    student = _logits(seed=5)
    never = torch.zeros_like(student)
    never[:, 1] = 1.0  # the teacher always says 1, never 4
    shifted = student.clone()
    shifted[:, 4] += class_logit_offset(student, never, 4)
    assert not (shifted.argmax(-1) == 4).any()
    shifted = student.clone()
    shifted[:, 1] += class_logit_offset(student, never, 1)
    assert (shifted.argmax(-1) == 1).all()


def test_offset_rejects_mismatched_or_empty_logits() -> None:
    with pytest.raises(ValueError, match=r"shape \(4, 3\) and teacher logits \(4, 5\)"):
        class_logit_offset(torch.zeros(4, 3), torch.zeros(4, 5), 0)
    with pytest.raises(ValueError, match="no rows"):
        class_logit_offset(torch.zeros(0, 3), torch.zeros(0, 3), 0)
    with pytest.raises(ValueError, match="class_index 3 is not a class of logits with 3 classes"):
        class_logit_offset(torch.zeros(4, 3), torch.zeros(4, 3), 3)


def test_offset_class_logit_moves_one_logit_of_a_copy(tmp_path: Path) -> None:
    model = TransformerClassifier(write_bert(tmp_path, labels=INTENTS), num_classes=3).eval()
    inputs = {"input_ids": torch.tensor([[2, 7, 9, 3]]), "attention_mask": torch.ones(1, 4, dtype=torch.long)}
    before = model(**inputs).logits
    shifted = offset_class_logit(model, 1, 0.75, num_classes=3)
    after = shifted(**inputs).logits
    assert torch.allclose(after - before, torch.tensor([[0.0, 0.75, 0.0]]), atol=1e-5)
    assert torch.equal(model(**inputs).logits, before)  # the given model is unchanged


def test_offset_class_logit_names_a_model_without_an_output_layer_or_bias() -> None:
    with pytest.raises(ValueError, match=r"no nn\.Linear with 5 outputs"):
        offset_class_logit(nn.Sequential(nn.Linear(4, 3)), 0, 1.0, num_classes=5)
    with pytest.raises(ValueError, match="has no bias"):
        offset_class_logit(nn.Sequential(nn.Linear(4, 3, bias=False)), 0, 1.0, num_classes=3)
    with pytest.raises(ValueError, match="class_index 3 is not a class"):
        offset_class_logit(nn.Sequential(nn.Linear(4, 3)), 3, 1.0, num_classes=3)
