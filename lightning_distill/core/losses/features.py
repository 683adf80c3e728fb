"""Feature-level distillation: hidden states (DistilBERT, TinyBERT) and attention maps (TinyBERT).

Layers are numbered as in a Hugging Face model's ``hidden_states``: 0 is the embedding output and ``i`` the output of
the ``i``-th transformer layer, so a model of ``n`` layers has hidden states ``0..n`` and attention maps ``1..n``. A
layer map says which teacher layer each student layer imitates, e.g. ``{0: 0, 1: 2, 2: 4, 3: 6}`` for a 3-layer
student of a 6-layer teacher.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn


def _token_mask(attention_mask: Tensor | None, reference: Tensor) -> Tensor:
    """A float ``(batch, length)`` mask of real (non-padding) tokens."""
    if attention_mask is None:
        return reference.new_ones(reference.shape[:2])
    return attention_mask.to(reference.dtype)


def hidden_state_loss(
    student_hidden: Tensor, teacher_hidden: Tensor, attention_mask: Tensor | None = None, kind: str = "cosine"
) -> Tensor:
    """Distance between student and teacher hidden states of the same tokens, averaged over real tokens.

    ``"cosine"`` is DistilBERT's ``1 - cos(h_student, h_teacher)`` per token (Sanh et al., 2019, its
    ``CosineEmbeddingLoss`` with target 1); ``"mse"`` is TinyBERT's mean squared error over tokens and features
    (Jiao et al., 2020). Padding tokens (``attention_mask == 0``) are left out.

    Args:
        student_hidden: ``(batch, length, width)``, already projected to the teacher's width where they differ.
        teacher_hidden: ``(batch, length, width)``; no gradient flows into it.
        attention_mask: ``(batch, length)`` with 1 for real tokens; None counts every token.
        kind: ``"cosine"`` or ``"mse"``.
    """
    if kind not in ("cosine", "mse"):
        raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")
    if student_hidden.shape != teacher_hidden.shape:
        raise ValueError(
            f"student hidden states have shape {tuple(student_hidden.shape)} but the teacher's "
            f"{tuple(teacher_hidden.shape)}; feature losses need the same tokens (one tokenizer) and equal widths "
            "(after projection)"
        )
    mask = _token_mask(attention_mask, student_hidden)
    teacher_hidden = teacher_hidden.detach()
    if kind == "cosine":
        per_token = 1.0 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)
    else:
        per_token = (student_hidden.float() - teacher_hidden.float()).pow(2).mean(-1)
    return (per_token * mask).sum() / mask.sum().clamp_min(1.0)


def attention_map_loss(
    student_attention: Tensor, teacher_attention: Tensor, attention_mask: Tensor | None = None
) -> Tensor:
    """TinyBERT's attention-map loss: mean squared error between attention matrices over real tokens.

    TinyBERT (Jiao et al., 2020) compares the maps head by head; where the head counts differ, each model's maps are
    averaged over its heads first. Hugging Face models return attention probabilities (after softmax), which is what
    is compared here.

    Args:
        student_attention: ``(batch, heads, length, length)``.
        teacher_attention: ``(batch, heads', length, length)``; no gradient flows into it.
        attention_mask: ``(batch, length)`` with 1 for real tokens; None counts every position.
    """
    if (
        student_attention.shape[-2:] != teacher_attention.shape[-2:]
        or student_attention.shape[0] != teacher_attention.shape[0]
    ):
        raise ValueError(
            f"student attention maps have shape {tuple(student_attention.shape)} but the teacher's "
            f"{tuple(teacher_attention.shape)}; attention losses need the same tokens (one tokenizer)"
        )
    teacher_attention = teacher_attention.detach().float()
    student_attention = student_attention.float()
    if student_attention.shape[1] != teacher_attention.shape[1]:
        student_attention = student_attention.mean(1, keepdim=True)
        teacher_attention = teacher_attention.mean(1, keepdim=True)
    mask = _token_mask(attention_mask, student_attention[:, 0])
    pair_mask = (mask[:, :, None] * mask[:, None, :])[:, None]  # (batch, 1, length, length)
    squared = (student_attention - teacher_attention).pow(2) * pair_mask
    return squared.sum() / (pair_mask.sum() * student_attention.shape[1]).clamp_min(1.0)


def _parse_layer_map(layer_map: dict[int, int]) -> dict[int, int]:
    if not layer_map:
        raise ValueError("layer_map must map at least one student layer to a teacher layer")
    try:
        return {int(k): int(v) for k, v in layer_map.items()}
    except (TypeError, ValueError) as error:
        raise ValueError(f"layer_map must map layer numbers to layer numbers, got {layer_map}") from error


def _check_layers(layer_map: dict[int, int], student_layers: int, teacher_layers: int, first: int, what: str) -> None:
    for side, layers, count in (
        ("student", layer_map.keys(), student_layers),
        ("teacher", layer_map.values(), teacher_layers),
    ):
        bad = sorted(i for i in layers if not first <= i <= count)
        if bad:
            valid = f"{first}..{count}" + (", 0 = embeddings" if first == 0 else "")
            raise ValueError(
                f"{what} layer_map {layer_map} names {side} layer(s) {bad}, but the {side} has {count} layers "
                f"(valid: {valid})"
            )


class HiddenStateLoss(nn.Module):
    """Hidden-state distillation over a layer map, with a learned projection where the widths differ.

    The projection (one ``Linear(student_width, teacher_width)`` per mapped student layer, as in TinyBERT) is created
    by :meth:`bind`, which the distillation module calls with both models' sizes; it is trained with the student.

    Args:
        layer_map: Student layer -> teacher layer, numbered as in ``hidden_states`` (0 = embeddings).
        kind: ``"cosine"`` (DistilBERT) or ``"mse"`` (TinyBERT).
        weight: Weight of this loss in the total loss.
    """

    def __init__(
        self, layer_map: dict[int, int], kind: Literal["cosine", "mse"] = "cosine", weight: float = 1.0
    ) -> None:
        super().__init__()
        if kind not in ("cosine", "mse"):
            raise ValueError(f"kind must be 'cosine' or 'mse', got {kind!r}")
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.layer_map = _parse_layer_map(layer_map)
        self.kind = kind
        self.weight = float(weight)
        self.projections = nn.ModuleDict()

    def bind(self, student_layers: int, teacher_layers: int, student_width: int, teacher_width: int) -> None:
        """Check the layer map against both models and create the projections where the widths differ."""
        _check_layers(self.layer_map, student_layers, teacher_layers, 0, "hidden-state")
        if student_width != teacher_width and not len(self.projections):
            for layer in self.layer_map:
                self.projections[str(layer)] = nn.Linear(student_width, teacher_width)

    def forward(
        self,
        student_hidden_states: Sequence[Tensor],
        teacher_hidden_states: Sequence[Tensor],
        attention_mask: Tensor | None,
    ) -> Tensor:
        losses = []
        for student_layer, teacher_layer in self.layer_map.items():
            if student_layer >= len(student_hidden_states) or teacher_layer >= len(teacher_hidden_states):
                raise ValueError(
                    f"layer_map {self.layer_map} names layers past the {len(student_hidden_states)} student / "
                    f"{len(teacher_hidden_states)} teacher hidden states the models returned"
                )
            student = student_hidden_states[student_layer]
            if str(student_layer) in self.projections:
                student = self.projections[str(student_layer)](student)
            losses.append(hidden_state_loss(student, teacher_hidden_states[teacher_layer], attention_mask, self.kind))
        return sum(losses) / len(losses)

    def extra_repr(self) -> str:
        return f"layer_map={self.layer_map}, kind={self.kind!r}, weight={self.weight}"


class AttentionLoss(nn.Module):
    """TinyBERT-style attention-map distillation over a layer map; see :func:`attention_map_loss`.

    Both models must return attention maps, which Hugging Face models do only with ``attn_implementation: eager``.

    Args:
        layer_map: Student layer -> teacher layer, 1-based (layer ``i``'s attention is ``attentions[i - 1]``).
        weight: Weight of this loss in the total loss.
    """

    def __init__(self, layer_map: dict[int, int], weight: float = 1.0) -> None:
        super().__init__()
        if weight < 0:
            raise ValueError(f"weight must be >= 0, got {weight}")
        self.layer_map = _parse_layer_map(layer_map)
        self.weight = float(weight)

    def bind(self, student_layers: int, teacher_layers: int) -> None:
        """Check the layer map against both models' layer counts."""
        _check_layers(self.layer_map, student_layers, teacher_layers, 1, "attention")

    def forward(
        self, student_attentions: Sequence[Tensor], teacher_attentions: Sequence[Tensor], attention_mask: Tensor | None
    ) -> Tensor:
        if not student_attentions or not teacher_attentions:
            raise ValueError(
                "the models returned no attention maps; Hugging Face models return them only with "
                "attn_implementation: eager (set it on the student and the teacher)"
            )
        losses = [
            attention_map_loss(student_attentions[s - 1], teacher_attentions[t - 1], attention_mask)
            for s, t in self.layer_map.items()
        ]
        return sum(losses) / len(losses)

    def extra_repr(self) -> str:
        return f"layer_map={self.layer_map}, weight={self.weight}"
