"""Architectures the structured-pruning tests prune, buildable by name in a fresh process."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class UserCNN(nn.Module):
    """A small CNN of a user's own: BatchNorm, a concatenation, a grouped and a depthwise conv, a residual addition."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.left = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.right = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.mix = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.grouped = nn.Conv2d(16, 16, 3, padding=1, groups=2)
        self.depthwise = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.pointwise = nn.Sequential(nn.Conv2d(16, 16, 1), nn.BatchNorm2d(16))
        self.residual = nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.BatchNorm2d(16))
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        y = self.mix(torch.cat([self.left(x), self.right(x)], dim=1))
        y = self.pointwise(self.depthwise(self.grouped(y)))
        y = torch.relu(y + self.residual(y))
        return self.head(y.mean(dim=(2, 3)))


class Logits(nn.Module):
    """A Hugging Face model's logits as a plain tensor (for ONNX export)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, *inputs: Tensor) -> Tensor:
        name = self.model.main_input_name
        if name == "pixel_values":
            return self.model(pixel_values=inputs[0]).logits
        return self.model(input_ids=inputs[0], attention_mask=inputs[1]).logits


def build(name: str) -> nn.Module:
    """The unpruned architecture called ``name``, randomly initialised (seed 0), in eval mode."""
    torch.manual_seed(0)
    if name == "user_cnn":
        return UserCNN().eval()
    if name in ("resnet18", "mobilenet_v3_small"):
        import torchvision

        return getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    from transformers import RobertaConfig, RobertaForSequenceClassification, ViTConfig, ViTForImageClassification

    if name == "vit":
        config = ViTConfig(
            num_hidden_layers=2,
            hidden_size=32,
            num_attention_heads=4,
            intermediate_size=64,
            image_size=32,
            patch_size=8,
            num_labels=3,
        )
        return ViTForImageClassification(config).eval()
    config = RobertaConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=100,
        max_position_embeddings=40,
        num_labels=3,
    )
    return RobertaForSequenceClassification(config).eval()


def example_inputs(name: str) -> tuple[Tensor, ...]:
    """Inputs of ``name``, as positional arguments of :func:`as_module` (seeded)."""
    generator = torch.Generator().manual_seed(1)
    if name in ("user_cnn", "resnet18", "mobilenet_v3_small"):
        return (torch.randn(2, 3, 64, 64, generator=generator),)
    if name == "vit":
        return (torch.randn(2, 3, 32, 32, generator=generator),)
    ids = torch.randint(3, 100, (2, 9), generator=generator)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    return ids, mask


def as_module(name: str, model: nn.Module) -> nn.Module:
    """``model`` called with positional tensors and returning a tensor."""
    return model if name in ("user_cnn", "resnet18", "mobilenet_v3_small") else Logits(model).eval()
