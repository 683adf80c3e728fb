"""Plain ``nn.Module`` models. None of them imports Lightning."""

from lightning_distill.core.models.class_offset import class_logit_offset, offset_class_logit, output_layer
from lightning_distill.core.models.dropout import set_dropout
from lightning_distill.core.models.mlp import MLP, MNISTClassifier, TinyMNIST
from lightning_distill.core.models.pretrained import RemoteCodeError, check_no_remote_code, from_pretrained
from lightning_distill.core.models.text import (
    StudentFromTeacher,
    TransformerClassifier,
    check_tokenizer_fits,
    keep_layers,
)
from lightning_distill.core.models.vision import SmallCNN, TorchvisionClassifier
from lightning_distill.core.models.weights import load_teacher_weights

__all__ = [
    "MLP",
    "MNISTClassifier",
    "RemoteCodeError",
    "SmallCNN",
    "StudentFromTeacher",
    "TinyMNIST",
    "TorchvisionClassifier",
    "TransformerClassifier",
    "check_no_remote_code",
    "check_tokenizer_fits",
    "class_logit_offset",
    "from_pretrained",
    "keep_layers",
    "load_teacher_weights",
    "offset_class_logit",
    "output_layer",
    "set_dropout",
]
