"""Saving, loading and reading the artifacts a text recipe writes: saved classifiers, weights files, ONNX graphs."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_distill.core.atomic import replace_folder
from lightning_distill.core.models.pretrained import from_pretrained

__all__ = [
    "FirstExamples",
    "embedding_is_int8",
    "forward_inputs",
    "has_tokenizer",
    "load_classifier",
    "load_pruned_classifier",
    "load_student",
    "save_classifier",
    "weights_file",
]


def has_tokenizer(folder: str | Path) -> bool:
    """Whether a saved model folder holds its tokenizer."""
    return (Path(folder) / "tokenizer_config.json").is_file()


def save_classifier(model: nn.Module, tokenizer: Any, folder: str | Path, pruned: bool = False) -> Path:
    """Write ``model`` (with ``save_pruned`` when ``pruned``, else its ``save_pretrained``) and ``tokenizer`` to
    ``folder``, which is replaced as a whole: a save that fails (a full disk) leaves the previous folder as it was."""
    from lightning_distill.core.pruning import save_pruned

    with replace_folder(folder) as fresh:
        if pruned:
            save_pruned(model, fresh)
        else:
            model.save_pretrained(str(fresh))
        tokenizer.save_pretrained(str(fresh))
    return Path(folder)


def load_classifier(folder: str | Path) -> nn.Module:
    """A Hugging Face sequence classifier saved with ``save_pretrained``."""
    from transformers import AutoModelForSequenceClassification

    return from_pretrained(AutoModelForSequenceClassification, folder, "saved classifier").eval()


def load_pruned_classifier(folder: str | Path) -> nn.Module:
    """A Hugging Face sequence classifier saved with ``save_pruned`` (its config is that of the unpruned model)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lightning_distill.core.pruning import load_pruned

    model = AutoModelForSequenceClassification.from_config(from_pretrained(AutoConfig, folder, "saved classifier"))
    return load_pruned(model, folder).eval()


def load_student(folder: str | Path, pruned: bool) -> nn.Module:
    """A student folder of the recipe: written by ``save_pruned`` when ``pruned``, else by ``save_pretrained``."""
    return load_pruned_classifier(folder) if pruned else load_classifier(folder)


def weights_file(folder: str | Path) -> Path:
    """The weights file of a saved model folder (``model.safetensors``, ``model.pt`` of ``save_pruned``, ...)."""
    for name in ("model.safetensors", "model.pt", "pytorch_model.bin"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise FileNotFoundError(f"no model weights (model.safetensors, model.pt, pytorch_model.bin) in {folder}")


def forward_inputs(model: nn.Module, encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a tokenizer's output that ``model.forward`` takes (DistilBERT takes no ``token_type_ids``)."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in encoded.items() if k in accepted}


class FirstExamples:
    """A data module's benchmark interface (``benchmark_data``, ``encode``) cut to its first ``limit`` texts.

    Args:
        data: Anything with ``benchmark_data(split)`` and ``encode(raw)`` (a ``TextClassificationDataModule``).
        limit: How many examples to keep; None keeps all.
    """

    def __init__(self, data: Any, limit: int | None) -> None:
        self.data, self.limit = data, limit

    def benchmark_data(self, split: str = "test") -> tuple[Any, torch.Tensor]:
        inputs, labels = self.data.benchmark_data(split)
        return (inputs[: self.limit], labels[: self.limit]) if self.limit else (inputs, labels)

    def encode(self, raw: Any) -> Any:
        return self.data.encode(raw)


def embedding_is_int8(path: str | Path) -> bool:
    """Whether the word-embedding table of an ONNX graph is stored as 8-bit integers."""
    import onnx

    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    graph = onnx.load(str(path)).graph
    return any("word_embeddings" in t.name and t.data_type in int8 for t in graph.initializer)
