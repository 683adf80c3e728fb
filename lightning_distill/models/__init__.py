"""Plain ``nn.Module`` models. None of them imports Lightning."""

from lightning_distill.models.mlp import MLP, MNISTClassifier, TinyMNIST

__all__ = ["MLP", "MNISTClassifier", "TinyMNIST"]
