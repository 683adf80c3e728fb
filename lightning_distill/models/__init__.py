"""Plain ``nn.Module`` models. None of them imports Lightning."""

from lightning_distill.models.mlp import MLP, MNISTClassifier, TinyMNIST
from lightning_distill.models.text import StudentFromTeacher, TransformerClassifier, check_tokenizer_fits, keep_layers

__all__ = [
    "MLP",
    "MNISTClassifier",
    "StudentFromTeacher",
    "TinyMNIST",
    "TransformerClassifier",
    "check_tokenizer_fits",
    "keep_layers",
]
