"""Binding the Hugging Face hidden-state and attention losses to the models' layer counts and widths."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.core.batch import TEACHER_PREFIX, student_inputs, teacher_inputs
from lightning_distill.core.losses.features import AttentionLoss, HiddenStateLoss


def _feature_count(model: nn.Module, *names: str) -> int:
    config = getattr(model, "config", None)
    for name in names:
        value = getattr(config, name, None)
        if value is not None:
            return int(value)
    raise ValueError(
        f"feature losses need models with a Hugging Face config ({'/'.join(names)}); {type(model).__name__} has none"
    )


def bind_hf_feature_losses(
    student: nn.Module, teacher: nn.Module, hidden: HiddenStateLoss | None, attention: AttentionLoss | None
) -> None:
    """Check that both models can return features and that the layer maps fit them; create projections."""
    for what, model in (("student", student), ("teacher", teacher)):
        parameters = inspect.signature(model.forward).parameters
        if "output_hidden_states" not in parameters and not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            raise ValueError(
                f"hidden_state_loss/attention_loss need the {what} to return hidden states, but "
                f"{type(model).__name__}.forward takes no output_hidden_states; use a TransformerClassifier"
            )
    student_layers = _feature_count(student, "num_hidden_layers")
    teacher_layers = _feature_count(teacher, "num_hidden_layers")
    if hidden is not None:
        hidden.bind(
            student_layers,
            teacher_layers,
            _feature_count(student, "hidden_size"),
            _feature_count(teacher, "hidden_size"),
        )
    if attention is not None:
        attention.bind(student_layers, teacher_layers)
        for what, model in (("student", student), ("teacher", teacher)):
            implementation = getattr(model.config, "_attn_implementation", None)
            if implementation not in (None, "eager"):
                raise ValueError(
                    f"attention_loss needs attention maps, which only eager attention returns, but the {what} uses "
                    f"{implementation!r}; set attn_implementation: eager on the {what}"
                )


def hf_feature_step(module: Any, batch: Any) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Student and teacher logits plus the weighted hidden-state/attention losses of a ``DistillationModule``
    (``module``), from one forward pass of each model (the teacher's without gradients)."""
    if isinstance(batch, Mapping) and any(str(k).startswith(TEACHER_PREFIX) for k in batch):
        raise ValueError(
            "hidden_state_loss/attention_loss compare the models token by token, but the batch holds a separate "
            "teacher encoding (teacher_* entries): student and teacher must share one tokenizer"
        )
    attentions = module.attention_loss is not None
    inputs = student_inputs(batch)
    student_out = module.student(**inputs, output_hidden_states=True, output_attentions=attentions)
    with torch.no_grad():
        teacher_out = module.teacher(**teacher_inputs(batch), output_hidden_states=True, output_attentions=attentions)
    mask = inputs.get("attention_mask")
    terms: dict[str, Tensor] = {}
    if module.hidden_state_loss is not None:
        value = module.hidden_state_loss(student_out.hidden_states, teacher_out.hidden_states, mask)
        terms["hidden_loss"] = value * module.hidden_state_loss.weight
    if module.attention_loss is not None:
        value = module.attention_loss(student_out.attentions, teacher_out.attentions, mask)
        terms["attention_loss"] = value * module.attention_loss.weight
    return student_out.logits, teacher_out.logits.detach(), terms
