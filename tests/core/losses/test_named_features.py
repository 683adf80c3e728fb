import math

import pytest
import torch
from torch import nn

from lightning_distill.core.losses import FeatureLoss, feature_loss, pool_to_common_size


class Block(nn.Module):
    """A residual block whose output width can only be read from inside it (its last BatchNorm)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


def _cnn(width: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(), Block(width), nn.Flatten(), nn.Linear(4, 2)
    )


def test_mse_is_the_mean_squared_difference() -> None:
    student = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    teacher = torch.tensor([[1.0, 0.0], [0.0, 4.0]])
    # (0 + 4 + 9 + 0) / 4
    assert feature_loss(student, teacher, "mse").item() == pytest.approx(13 / 4)


def test_cosine_is_one_minus_cosine_of_channel_vectors_averaged_over_positions() -> None:
    # Two examples of a (batch, channels, 1, 2) map: the channel vectors are compared pixel by pixel.
    student = torch.tensor([[[[1.0, 1.0]], [[0.0, 1.0]]], [[[2.0, 0.0]], [[0.0, 3.0]]]])
    teacher = torch.tensor([[[[1.0, 0.0]], [[0.0, 1.0]]], [[[0.0, 1.0]], [[1.0, 0.0]]]])
    # pixels: (1,0)v(1,0) -> cos 1; (1,1)v(0,1) -> 1/sqrt2; (2,0)v(0,1) -> 0; (0,3)v(1,0) -> 0
    expected = ((1 - 1) + (1 - 1 / math.sqrt(2)) + (1 - 0) + (1 - 0)) / 4
    assert feature_loss(student, teacher, "cosine").item() == pytest.approx(expected)
    # scale does not matter to the cosine loss
    assert feature_loss(3 * student, teacher, "cosine").item() == pytest.approx(expected)


def test_larger_map_is_average_pooled_to_the_smaller() -> None:
    large = torch.arange(16.0).reshape(1, 1, 4, 4)
    small = torch.zeros(1, 1, 2, 2)
    pooled, same = pool_to_common_size(large, small)
    assert same is small
    torch.testing.assert_close(pooled, torch.tensor([[[[2.5, 4.5], [10.5, 12.5]]]]))


def test_widths_are_read_from_the_named_module_or_inside_or_before_it() -> None:
    student, teacher = _cnn(4), _cnn(16)
    after_relu = FeatureLoss("2", "3")  # a ReLU of a Sequential (after BatchNorm) -> a residual block
    after_relu.bind(student, teacher)
    assert (after_relu.student_width, after_relu.teacher_width) == (4, 16)
    assert isinstance(after_relu.projection, nn.Conv2d) and after_relu.projection.weight.shape == (16, 4, 1, 1)
    linear = FeatureLoss("5", "5")
    linear.bind(student, teacher)
    assert linear.projection is None  # same width: nothing to learn
    flat = FeatureLoss("4", "3.bn2", student_width=64)  # Flatten has no width; given, it gets a Linear
    flat.bind(student, teacher)
    assert isinstance(flat.projection, nn.Linear) and flat.projection.weight.shape == (16, 64)


def test_projection_and_pooling_reach_the_teacher_shape_and_train() -> None:
    loss = FeatureLoss("0", "0", loss="mse")
    loss.bind(_cnn(4), _cnn(16))
    student = torch.randn(2, 4, 8, 8, requires_grad=True)
    value = loss(student, torch.randn(2, 16, 4, 4))
    value.backward()
    assert value.item() > 0 and loss.projection.weight.grad is not None and student.grad is not None


def test_unreadable_width_asks_for_it() -> None:
    with pytest.raises(ValueError, match=r"cannot read the output width of the student's '4' \(Flatten.*student_width"):
        FeatureLoss("4", "3").bind(_cnn(4), _cnn(16))


def test_wrong_layer_names_list_the_closest_modules() -> None:
    student, teacher = _cnn(4), _cnn(16)
    not_a_module = r"teacher_layer '3.bn3' is not a module of the teacher \(Sequential\); closest: 3.bn"
    with pytest.raises(ValueError, match=not_a_module):
        FeatureLoss("2", "3.bn3").bind(student, teacher)
    with pytest.raises(ValueError, match=r"student_layer 'layer9' .*its modules: 0, 1, 2, 3, 3.conv1"):
        FeatureLoss("layer9", "3").bind(student, teacher)
    with pytest.raises(ValueError, match=r"drop the 'student.' prefix"):
        FeatureLoss("student.2", "3").bind(student, teacher)


def test_feature_of_unexpected_width_is_explained() -> None:
    loss = FeatureLoss("2", "3")
    loss.bind(_cnn(4), _cnn(16))
    with pytest.raises(ValueError, match=r"the student's '2' returned shape \(2, 5, 8, 8\), but FeatureLoss expects 4"):
        loss(torch.randn(2, 5, 8, 8), torch.randn(2, 16, 8, 8))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"student_layer": ""}, "student_layer must name a module"),
        ({"loss": "l1"}, "loss must be 'mse' or 'cosine'"),
        ({"weight": -1.0}, "weight must be >= 0"),
        ({"teacher_width": 0}, "teacher_width must be a positive"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    arguments = {"student_layer": "a", "teacher_layer": "b", **kwargs}
    with pytest.raises(ValueError, match=match):
        FeatureLoss(**arguments)
