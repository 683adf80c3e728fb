"""A tiny residual CNN and the int8 module check shared by the FX quantization tests and their callback tests."""

from __future__ import annotations

import torch
from torch import nn

INT8_PACKAGES = ("torch.ao.nn.quantized", "torch.ao.nn.intrinsic.quantized")


def is_int8(module: nn.Module) -> bool:
    """Whether ``module`` is one of PyTorch's converted int8 modules."""
    return type(module).__module__.startswith(INT8_PACKAGES)


class ResidualCNN(nn.Module):
    """Conv-BN-ReLU, a residual Conv-BN-ReLU block and a Linear head on 1-channel images, 3 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 8, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = x + torch.relu(self.bn2(self.conv2(x)))  # a residual sum: the eager API cannot run it in int8
        return self.head(x.mean((2, 3)))
