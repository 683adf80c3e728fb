"""The convolutional models: shapes, tracing, and the adaptation of torchvision models to other inputs."""

from __future__ import annotations

import pytest
import torch
import torch.fx
from torch import nn

from lightning_distill.core.models import SmallCNN, TorchvisionClassifier
from lightning_distill.core.models.vision import _adapt_first_conv


def test_small_cnn_shapes_and_traces() -> None:
    model = SmallCNN(num_classes=7, in_channels=3, widths=[8, 16]).eval()
    x = torch.randn(2, 3, 28, 28)
    assert model(x).shape == (2, 7)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x))
    assert [type(m) for m in model.features[1]] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d]


@pytest.mark.parametrize(("kwargs", "match"), [({"num_classes": 1}, "at least 2"), ({"widths": []}, "non-empty")])
def test_small_cnn_refuses_bad_settings(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SmallCNN(**kwargs)


def test_resnet18_for_mnist_sized_inputs() -> None:
    model = TorchvisionClassifier("resnet18", num_classes=10, in_channels=1, small_input=True).eval()
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.net.conv1.kernel_size == (3, 3) and model.net.conv1.stride == (1, 1)
    assert model.net.conv1.in_channels == 1


def test_first_conv_of_a_grayscale_model_sums_the_colour_weights() -> None:
    """A gray image through the adapted conv equals the same image repeated on R, G and B through the original."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    original = type(model)(nn.Conv2d(3, 4, 3), nn.ReLU())
    original.load_state_dict(model.state_dict())
    _adapt_first_conv(model, in_channels=1)
    gray = torch.randn(2, 1, 9, 9)
    torch.testing.assert_close(model(gray), original(gray.repeat(1, 3, 1, 1)))


def test_torchvision_errors_name_the_choices() -> None:
    with pytest.raises(ValueError, match=r"no classification model 'resnet19'.*resnet18"):
        TorchvisionClassifier("resnet19")
    with pytest.raises(ValueError, match=r"small_input adapts the stem of ResNet-family.*mobilenet_v3_small"):
        TorchvisionClassifier("mobilenet_v3_small", small_input=True)


def test_mobilenet_with_other_channels() -> None:
    model = TorchvisionClassifier("mobilenet_v3_small", num_classes=5, in_channels=1).eval()
    assert model(torch.randn(1, 1, 64, 64)).shape == (1, 5)
