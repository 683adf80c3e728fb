"""Convolutional image classifiers: a small configurable CNN and torchvision models adapted to small inputs."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

__all__ = ["SmallCNN", "TorchvisionClassifier"]

_SMALL_INPUT_FAMILIES = ("resnet", "resnext", "wide_resnet")


class SmallCNN(nn.Module):
    """``[Conv3x3 -> BatchNorm -> ReLU -> MaxPool2] * n -> global average pool -> Linear``.

    The convolutional blocks are ``self.features.<i>`` (each an ``nn.Sequential`` of conv, bn, relu, pool) and the
    output layer is ``self.classifier``, so feature losses, pruning and quantization can name them. It traces with
    ``torch.fx`` and exports to ONNX.

    Args:
        num_classes: Number of output logits.
        in_channels: Channels of the input images (1 for MNIST).
        widths: Output channels of each block; each block halves the spatial size.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1, widths: Sequence[int] = (32, 64, 128)) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be a non-empty list of positive channel counts, got {list(widths)}")
        self.num_classes = num_classes
        blocks, previous = [], in_channels
        for width in widths:
            blocks.append(
                nn.Sequential(
                    nn.Conv2d(previous, int(width), 3, padding=1, bias=False),
                    nn.BatchNorm2d(int(width)),
                    nn.ReLU(inplace=True),
                    nn.MaxPool2d(2),
                )
            )
            previous = int(width)
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(previous, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


class TorchvisionClassifier(nn.Module):
    """A torchvision classification model (``self.net``) with the number of classes and input channels you need.

    ``name`` is any model of ``torchvision.models.list_models()`` (``resnet18``, ``mobilenet_v3_small``,
    ``efficientnet_b0``, ``vit_b_16``, ...). With ``weights`` (e.g. ``"DEFAULT"``, downloaded by torchvision; or a
    local file through ``teacher_checkpoint`` instead) the pretrained model's last Linear is replaced by a new one with
    ``num_classes`` outputs, and for ``in_channels != 3`` the first convolution's weights are summed over the colour
    channels and spread over the new ones (the usual way to start a grayscale model from an RGB one).

    ``small_input=True`` adapts ResNet-family stems to images of about 32x32 or smaller (MNIST, CIFAR): the 7x7
    stride-2 first convolution becomes 3x3 stride 1, so a 28x28 image reaches the last stage at 2x2 instead of 1x1.

    Args:
        name: torchvision model name.
        num_classes: Number of output logits.
        in_channels: Channels of the input images.
        weights: torchvision weights name, or None for random initialisation (no download).
        small_input: Adapt the stem of ResNet-family models to small images.
    """

    def __init__(
        self,
        name: str = "resnet18",
        num_classes: int = 10,
        in_channels: int = 3,
        weights: str | None = None,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        import torchvision

        available = torchvision.models.list_models(module=torchvision.models)
        if name not in available:
            raise ValueError(f"torchvision has no classification model {name!r}; choose one of {sorted(available)}")
        if small_input and not name.startswith(_SMALL_INPUT_FAMILIES):
            raise ValueError(
                f"small_input adapts the stem of ResNet-family models ({', '.join(_SMALL_INPUT_FAMILIES)}), "
                f"not {name}; leave it false and resize the images instead"
            )
        self.num_classes = num_classes
        if weights is None:
            self.net = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
        else:
            self.net = torchvision.models.get_model(name, weights=weights)
            _replace_last_linear(self.net, num_classes)
        if in_channels != 3:
            _adapt_first_conv(self.net, in_channels)
        if small_input:
            conv = self.net.conv1
            self.net.conv1 = nn.Conv2d(conv.in_channels, conv.out_channels, 3, stride=1, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _named_layer(model: nn.Module, kind: type[nn.Module], last: bool) -> str:
    names = [name for name, module in model.named_modules() if type(module) is kind]
    if not names:
        raise ValueError(f"{type(model).__name__} has no {kind.__name__} layer to adapt")
    return names[-1] if last else names[0]


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def _replace_last_linear(model: nn.Module, num_classes: int) -> None:
    name = _named_layer(model, nn.Linear, last=True)
    old = model.get_submodule(name)
    _replace(model, name, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))


def _adapt_first_conv(model: nn.Module, in_channels: int) -> None:
    name = _named_layer(model, nn.Conv2d, last=False)
    old = model.get_submodule(name)
    if old.groups != 1:
        raise ValueError(f"the first convolution {name} is grouped ({old.groups} groups); in_channels cannot change")
    new = nn.Conv2d(
        in_channels,
        old.out_channels,
        old.kernel_size,
        stride=old.stride,
        padding=old.padding,
        dilation=old.dilation,
        bias=old.bias is not None,
    )
    with torch.no_grad():
        new.weight.copy_((old.weight.sum(dim=1, keepdim=True) / in_channels).expand_as(new.weight))
        if old.bias is not None:
            new.bias.copy_(old.bias)
    _replace(model, name, new)
