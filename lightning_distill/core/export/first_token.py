"""The last encoder layer of a text classifier computed for the first token only, for export.

A sequence classifier of the BERT family reads one position of its last hidden states: the pooler (BERT) or the
classification head (RoBERTa, ELECTRA) takes the first token, ``[CLS]``/``<s>``. Every other row of the last layer
is computed and thrown away. In that layer only the first token needs its query, attention output, residual,
layer norms and feed-forward block; the keys and values are still needed for every token, because the first token
attends to all of them. So the last layer's matrix products shrink from ``S`` rows to one (and two ``S``-row
products for the keys and values): for a 3-layer student on 10-token queries, about a quarter of the encoder's
work. The result is the same function: only rounding differs (:func:`first_token_classifier` checks the logits
against the model's before it returns).

This is an inference rewrite: the copy it returns is for export and serving, not for training (its last hidden
states hold one position, so hidden-state distillation losses and token-level heads cannot use it).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["FirstTokenLayer", "cut_for_export", "first_token_classifier", "first_token_unsupported"]

# A layer of the BERT family (BERT, RoBERTa, ELECTRA, XLM-R, MiniLM, ...) has these submodules.
_LAYER_PARTS = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output")


def _submodule(module: nn.Module, dotted: str) -> nn.Module | None:
    for part in dotted.split("."):
        module = getattr(module, part, None)
        if not isinstance(module, nn.Module):
            return None
    return module


def _encoder_layers(model: nn.Module) -> nn.ModuleList | None:
    """The ``encoder.layer`` module list of a Hugging Face encoder inside ``model``, if there is exactly one."""
    found = [
        m.layer
        for m in model.modules()
        if type(m).__name__.endswith("Encoder") and isinstance(getattr(m, "layer", None), nn.ModuleList)
    ]
    return found[0] if len(found) == 1 and len(found[0]) > 0 else None


def first_token_unsupported(model: nn.Module) -> str | None:
    """Why ``model``'s last layer cannot be cut to the first token, or None where it can.

    It can where the model holds one Hugging Face encoder (``*Encoder`` with a ``layer`` list) whose last layer has
    the BERT family's parts (``attention.self.query/key/value``, ``attention.output``, ``feed_forward_chunk``) and is
    no decoder layer (no cache, no cross-attention). Whether the head reads only the first token is checked on
    inputs by :func:`first_token_classifier`.
    """
    layers = _encoder_layers(model)
    if layers is None:
        return f"{type(model).__name__} holds no single Hugging Face encoder with an encoder.layer list"
    last = layers[-1]
    if isinstance(last, FirstTokenLayer):
        return "its last layer already computes the first token only"
    missing = [p for p in _LAYER_PARTS if _submodule(last, p) is None]
    missing += [] if callable(getattr(last, "feed_forward_chunk", None)) else ["feed_forward_chunk"]
    if missing:
        return f"its layers ({type(last).__name__}) are not BERT-style: they lack {', '.join(missing)}"
    attention = _submodule(last, "attention.self")
    lacking = [a for a in ("config", "scaling", "attention_head_size") if not hasattr(attention, a)]
    if lacking:
        return f"its self-attention ({type(attention).__name__}) has no {', '.join(lacking)} as BERT's has"
    extra = sorted(set(dict(last.attention.named_children())) - {"self", "output"})
    if extra:  # e.g. the LayerNorm of a pre-LN layer (RobertaPreLayerNorm, MegatronBert), applied before attention
        return f"its attention block ({type(last.attention).__name__}) has parts a BERT layer has not: {extra}"
    if getattr(attention.config, "is_decoder", False) or getattr(last, "add_cross_attention", False):
        return f"its layers ({type(last).__name__}) are decoder layers"
    return None


class FirstTokenLayer(nn.Module):
    """A BERT-family encoder layer whose output is the first position's only: shape ``(batch, 1, hidden)``.

    The first token's query attends to every token's key and value (with the model's attention mask, cut to the
    first query row), then the layer's own attention output, residual, layer norms and feed-forward block run on that
    one row. The wrapped layer's modules and weights are used as they are. It is for inference (export, serving):
    attention dropout is off whatever the mode, and the output has one position, which training losses on hidden
    states cannot use.

    Args:
        layer: The last layer of the encoder (``BertLayer``, ``RobertaLayer``, ...).
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        encoder_hidden_states: Tensor | None = None,
        encoder_attention_mask: Tensor | None = None,
        cache: Any = None,
        **kwargs: Any,
    ) -> Tensor:
        from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
        from transformers.models.bert.modeling_bert import eager_attention_forward

        attention = self.layer.attention.self
        first = hidden_states[:, :1]
        head_size = attention.attention_head_size
        query = attention.query(first).view(first.shape[0], 1, -1, head_size).transpose(1, 2)
        every = (*hidden_states.shape[:-1], -1, head_size)
        key = attention.key(hidden_states).view(*every).transpose(1, 2)
        value = attention.value(hidden_states).view(*every).transpose(1, 2)
        if attention_mask is not None and attention_mask.dim() == 4:
            attention_mask = attention_mask[:, :, :1]  # (batch, heads or 1, query rows, keys): the first row
        implementation = attention.config._attn_implementation
        interface = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        context, _ = interface(
            attention, query, key, value, attention_mask, dropout=0.0, scaling=attention.scaling, **kwargs
        )
        context = context.reshape(first.shape[0], 1, -1)
        return self.layer.feed_forward_chunk(self.layer.attention.output(context, first))


def first_token_classifier(
    model: nn.Module, example_inputs: Mapping[str, Tensor], atol: float = 1e-4
) -> tuple[nn.Module, str | None]:
    """A float32 copy of ``model`` in eval mode whose last encoder layer computes the first token only, where that
    gives the model's logits.

    Args:
        model: A Hugging Face sequence classifier of the BERT family (post-LN layers: BERT, RoBERTa, ELECTRA,
            XLM-R, MiniLM), or a wrapper holding one (``TransformerClassifier``).
        example_inputs: A tokenized batch (keyword arguments of ``model``), padded, to check the copy on.
        atol: Largest difference of logits allowed between the copy and ``model`` on the example, relative to the
            largest logit where that is above 1.

    Returns:
        ``(copy, None)``, or ``(float32 eval copy of model, uncut; reason)`` where the layer cannot be cut
        (:func:`first_token_unsupported`), the cut copy fails on the example, or its logits differ from the model's
        (a head that reads more than the first token, e.g. mean pooling, or a layer that is not a plain BERT one).
    """
    from lightning_distill.core.batch import logits_of

    reason = first_token_unsupported(model)
    model = copy.deepcopy(model).float().eval()
    if reason is not None:
        return model, reason
    layers = _encoder_layers(model)
    whole = layers[-1]
    with torch.no_grad():
        expected = logits_of(model, example_inputs)
        layers[-1] = FirstTokenLayer(whole)
        try:
            got = logits_of(model, example_inputs)
        except Exception as error:  # whatever fails in the cut model, the model is exported whole
            layers[-1] = whole
            return model, f"the cut model fails on the example ({type(error).__name__}: {error})"
    tolerance = atol * max(1.0, expected.abs().max().item())
    if expected.shape != got.shape or not torch.allclose(expected, got, rtol=0.0, atol=tolerance):
        layers[-1] = whole
        difference = (expected - got).abs().max().item() if expected.shape == got.shape else float("inf")
        return model, (
            f"the cut model's logits differ from the model's by {difference:.3g} (> {tolerance:.3g}) on the example: "
            "its head reads more than the first token, or its last layer is not a plain BERT layer"
        )
    return model, None


def cut_for_export(
    model: nn.Module, example: Mapping[str, Any], first_token_only: bool = True, stacklevel: int = 2
) -> tuple[nn.Module, str]:
    """The model to export, cut by :func:`first_token_classifier` where ``first_token_only`` and that gives the same
    logits, and how its last layer is computed, in words (for a model card).

    A model whose layers are not BERT's (DistilBERT) is exported whole and the words say why. One whose layers look
    like BERT's but whose cut copy fails or gives other logits is exported whole too, with a warning, since that
    says something about the model its author may not know.
    """
    if not first_token_only:
        return model, "every token (first_token_only=False)"
    reason = first_token_unsupported(model)
    if reason is not None:  # known from the layers alone: no copy, no forward pass
        return model, f"every token ({reason})"
    cut, reason = first_token_classifier(model, example)
    if reason is None:
        return cut, "the first token only, the one the classification head reads"
    warnings.warn(
        f"the last encoder layer is exported for every token, not the first only: {reason}; "
        "export_text_classifier(..., first_token_only=False) exports it whole without this check",
        stacklevel=stacklevel + 1,
    )
    return model, f"every token ({reason})"
