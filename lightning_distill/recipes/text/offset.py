"""The offset step's work: a reject class's logit offset in a student so that, on the validation texts, it predicts
the class as often as the teacher (see :mod:`lightning_distill.core.models.class_offset`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.core.benchmark import module_predictor
from lightning_distill.core.models.class_offset import class_logit_offset, offset_class_logit

__all__ = ["class_index", "offset_student", "save_student", "teacher_reference", "texts_logits"]


def class_index(data: Any, label: str) -> int:
    """The id of ``label`` in a data module's labels, or an error naming the labels there are."""
    if label not in data.label2id:
        shown = ", ".join(list(data.label2id)[:12]) + (", ..." if len(data.label2id) > 12 else "")
        raise ValueError(
            f"offset_class {label!r} is not a label of the data ({len(data.label2id)} labels: {shown}); "
            "give the reject class's label, or --no-offset to skip the offset step"
        )
    return data.label2id[label]


def texts_logits(model: nn.Module, data: Any, texts: list[str], batch_size: int = 256) -> Tensor:
    """``model``'s logits of raw ``texts``, encoded by ``data.encode`` in batches (the benchmark's predictor), as
    float32 on the CPU."""
    predict = module_predictor(model, data.encode)
    with torch.inference_mode():
        batches = [predict(texts[start : start + batch_size]) for start in range(0, len(texts), batch_size)]
    return torch.cat([logits.float().cpu() for logits in batches])


def teacher_reference(teacher: nn.Module, data: Any, label: str) -> tuple[list[str], Tensor, Tensor, dict[str, Any]]:
    """The validation texts, their labels and the teacher's logits of them, and a record of the teacher's rate.

    Args:
        teacher: The fine-tuned teacher.
        data: A data module encoding for the teacher, with a validation split.
        label: The reject class's label.
    """
    index = class_index(data, label)
    texts, labels = data.benchmark_data("val")
    logits = texts_logits(teacher, data, texts)
    record = {
        "class": label,
        "index": index,
        "validation_texts": len(texts),
        "teacher_predicted": int((logits.argmax(-1) == index).sum()),
        "teacher_accuracy": (logits.argmax(-1) == labels).float().mean().item(),
    }
    return texts, labels, logits, record


def offset_student(
    model: nn.Module, data: Any, texts: list[str], labels: Tensor, teacher_logits: Tensor, index: int
) -> tuple[nn.Module, dict[str, Any]]:
    """A copy of ``model`` with class ``index``'s logit offset to match the teacher's rate on ``texts``, and a record.

    The record holds the offset, how many texts the student predicts as the class before and after, and its accuracy
    on the texts before and after (``labels`` are only measured, never fitted: the target is the teacher's count).
    """
    logits = texts_logits(model, data, texts)
    offset = class_logit_offset(logits, teacher_logits, index)
    shifted = logits.clone()
    shifted[:, index] += offset
    record = {
        "offset": offset,
        "predicted_before": int((logits.argmax(-1) == index).sum()),
        "predicted_after": int((shifted.argmax(-1) == index).sum()),
        "accuracy_before": (logits.argmax(-1) == labels).float().mean().item(),
        "accuracy_after": (shifted.argmax(-1) == labels).float().mean().item(),
    }
    return offset_class_logit(model, index, offset, logits.shape[1]), record


def save_student(model: nn.Module, source: str, out: Path, pruned: bool) -> None:
    """Save an offset student as its ``source`` folder was saved (``save_pruned`` when ``pruned``, else
    ``save_pretrained``), with ``source``'s tokenizer; ``out`` is replaced whole, or kept as it was on failure."""
    from transformers import AutoTokenizer

    from lightning_distill.core.models.pretrained import from_pretrained
    from lightning_distill.recipes.text.artifacts import save_classifier

    save_classifier(model, from_pretrained(AutoTokenizer, source, "tokenizer source"), out, pruned=pruned)
