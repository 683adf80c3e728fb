import pytest
import torch
import yaml
from jsonargparse import ArgumentParser

from lightning_distill.core.losses import AttentionLoss, HiddenStateLoss, attention_map_loss, hidden_state_loss


def test_cosine_hidden_state_loss_is_one_minus_cosine_over_real_tokens() -> None:
    teacher = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [5.0, 5.0]]])
    student = torch.tensor([[[2.0, 0.0], [1.0, 0.0], [-1.0, 7.0]]])  # cos 1, cos 0, and a padding token
    mask = torch.tensor([[1, 1, 0]])
    assert hidden_state_loss(student, teacher, mask, "cosine").item() == pytest.approx(0.5)
    assert hidden_state_loss(teacher, teacher, None, "cosine").item() == pytest.approx(0.0, abs=1e-6)


def test_mse_hidden_state_loss() -> None:
    teacher = torch.zeros(1, 2, 2)
    student = torch.tensor([[[1.0, 1.0], [2.0, 0.0]]])
    assert hidden_state_loss(student, teacher, torch.tensor([[1, 1]]), "mse").item() == pytest.approx((1 + 2) / 2)
    assert hidden_state_loss(student, teacher, torch.tensor([[1, 0]]), "mse").item() == pytest.approx(1.0)


def test_attention_map_loss_masks_padding_and_averages_heads_when_counts_differ() -> None:
    teacher = torch.softmax(torch.randn(2, 4, 3, 3), -1)
    assert attention_map_loss(teacher, teacher).item() == pytest.approx(0.0)
    student = teacher.clone()
    student[0, :, 2, :] += 1.0  # only a padding row differs
    assert attention_map_loss(student, teacher, torch.tensor([[1, 1, 0], [1, 1, 1]])).item() == pytest.approx(0.0)
    two_heads = teacher.reshape(2, 2, 2, 3, 3).mean(2)
    assert attention_map_loss(two_heads, teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_hidden_state_loss_projects_when_widths_differ_and_gradients_reach_the_projection() -> None:
    loss = HiddenStateLoss({0: 0, 1: 2}, kind="mse", weight=0.5)
    loss.bind(student_layers=1, teacher_layers=2, student_width=4, teacher_width=6)
    assert set(loss.projections) == {"0", "1"} and loss.projections["0"].weight.shape == (6, 4)
    student = [torch.randn(2, 3, 4, requires_grad=True) for _ in range(2)]
    teacher = [torch.randn(2, 3, 6) for _ in range(3)]
    value = loss(student, teacher, torch.ones(2, 3))
    value.backward()
    assert value.item() > 0 and loss.projections["1"].weight.grad is not None


def test_same_width_needs_no_projection() -> None:
    loss = HiddenStateLoss({1: 2})
    loss.bind(3, 6, 8, 8)
    assert len(loss.projections) == 0


@pytest.mark.parametrize(
    ("layer_map", "match"),
    [
        ({4: 2}, r"names student layer\(s\) \[4\], but the student has 3 layers \(valid: 0..3, 0 = embeddings\)"),
        ({1: 7}, r"names teacher layer\(s\) \[7\], but the teacher has 6 layers"),
    ],
)
def test_layer_map_naming_a_missing_layer_is_refused(layer_map: dict[int, int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        HiddenStateLoss(layer_map).bind(3, 6, 8, 8)


def test_attention_layers_start_at_one() -> None:
    with pytest.raises(ValueError, match=r"attention layer_map \{0: 1\} names student layer\(s\) \[0\].*valid: 1..3"):
        AttentionLoss({0: 1}).bind(3, 6)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        HiddenStateLoss({})
    with pytest.raises(ValueError, match="kind must be"):
        HiddenStateLoss({1: 1}, kind="l1")
    with pytest.raises(ValueError, match="weight must be >= 0"):
        AttentionLoss({1: 1}, weight=-1.0)


def test_layer_map_is_written_in_yaml() -> None:
    parser = ArgumentParser()
    parser.add_argument("--loss", type=HiddenStateLoss)
    config = yaml.safe_load(
        """
        loss:
          class_path: lightning_distill.core.losses.HiddenStateLoss
          init_args: {layer_map: {0: 0, 1: 2, 2: 4, 3: 6}, kind: mse, weight: 0.5}
        """
    )
    loss = parser.instantiate_classes(parser.parse_object(config)).loss
    assert loss.layer_map == {0: 0, 1: 2, 2: 4, 3: 6} and loss.kind == "mse" and loss.weight == 0.5
