"""How a batch is read, so images and tokenized text go through the same code (plain PyTorch, no Lightning).

A batch is a sequence ``(inputs, labels)`` or ``(inputs, labels, index)``, or a mapping with a ``labels`` entry (and
optionally ``index``). ``inputs`` is a tensor passed to the model as its one positional argument. In a mapping,
entries whose names start with ``teacher_`` are the teacher's own encoding of the same examples (used when teacher and
student tokenize differently); every other entry except ``labels`` and ``index`` is passed to the student as a keyword
argument.

``index`` is a 1-D integer tensor: each example's position in its split (``0..N-1`` in dataset order), the same in
every epoch whatever the shuffling. The teacher-logit cache looks the teacher's logits up by it.
:class:`~lightning_distill.lightning.data.IndexedDataset` adds it to any ``Dataset``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

TEACHER_PREFIX = "teacher_"
_NOT_INPUTS = ("labels", "index")


def batch_labels(batch: Any) -> Tensor:
    """The integer class labels of a batch."""
    if isinstance(batch, Mapping):
        if "labels" not in batch:
            raise KeyError(f"a mapping batch needs a 'labels' entry, got keys {sorted(batch)}")
        return batch["labels"]
    return batch[1]


def batch_index(batch: Any) -> Tensor | None:
    """Each example's position in its split: a mapping's ``index`` entry, the third item of a sequence, else None.

    The third item of any 3-item sequence is taken as the index, whatever it holds: check it with :func:`is_index`
    before relying on it (an ``(inputs, labels, weights)`` batch has no index).
    """
    if isinstance(batch, Mapping):
        return batch.get("index")
    if isinstance(batch, (tuple, list)) and len(batch) == 3:
        return batch[2]
    return None


def is_index(value: Any) -> bool:
    """Whether ``value`` can be an index of a batch: a 1-D tensor of integers."""
    return (
        isinstance(value, Tensor)
        and value.dim() == 1
        and not value.is_floating_point()
        and not value.is_complex()
        and value.dtype != torch.bool
    )


def to_device(inputs: Any, device: Any) -> Any:
    """Model inputs (a tensor, or a dict of tensors) moved to ``device``."""
    if isinstance(inputs, Mapping):
        return {k: v.to(device) for k, v in inputs.items()}
    return inputs.to(device)


def student_inputs(batch: Any) -> Any:
    """The student's inputs: a tensor, or a dict of keyword arguments."""
    if isinstance(batch, Mapping):
        return {k: v for k, v in batch.items() if k not in _NOT_INPUTS and not k.startswith(TEACHER_PREFIX)}
    return batch[0]


def teacher_inputs(batch: Any) -> Any:
    """The teacher's inputs: its own ``teacher_*`` entries where the batch has them, else the student's."""
    if isinstance(batch, Mapping):
        own = {k[len(TEACHER_PREFIX) :]: v for k, v in batch.items() if k.startswith(TEACHER_PREFIX)}
        return own or student_inputs(batch)
    return batch[0]


def batch_size(batch: Any) -> int:
    return int(batch_labels(batch).shape[0])


def model_inputs(batch: Any) -> Any:
    """The model inputs of a batch: a tensor as is, else the student's inputs of ``(inputs, labels)`` or a mapping."""
    return batch if isinstance(batch, Tensor) else student_inputs(batch)


def output_logits(output: Any) -> Tensor:
    """The logits tensor of a model's output: ``output.logits`` (Hugging Face output objects) or the output itself."""
    return output.logits if hasattr(output, "logits") else output


def logits_of(model: nn.Module, inputs: Any) -> Tensor:
    """Run ``model`` on ``inputs`` (keyword arguments for a dict) and return its logits tensor."""
    return output_logits(model(**inputs) if isinstance(inputs, Mapping) else model(inputs))


def model_num_classes(model: nn.Module) -> int | None:
    """The number of classes a model predicts, where it says so (``num_classes`` or a Hugging Face config)."""
    value = getattr(model, "num_classes", None)
    if value is None:
        config = getattr(model, "config", None)
        value = getattr(config, "num_labels", None)
    return int(value) if value is not None else None
