"""Hugging Face sequence classifiers as plain ``nn.Module``s that a LightningCLI config can build.

:class:`TransformerClassifier` loads any checkpoint (a Hub name such as ``bert-base-uncased`` or a local folder such as
``../shared/models/minilm-l6-h384-uncased``) with a classification head for the data's labels.
:class:`StudentFromTeacher` builds a smaller student from a teacher checkpoint by keeping some of its layers, as
DistilBERT was initialised (Sanh et al., 2019: every other layer of BERT-base). Both save and load with
``save_pretrained`` / ``from_pretrained``.
"""

from __future__ import annotations

import inspect
import itertools
import re
from pathlib import Path
from typing import Any, Literal

from torch import Tensor, nn

from lightning_distill.core.models.pretrained import from_pretrained

_GENERIC_LABEL = re.compile(r"^LABEL_\d+$")


def _normalize_id2label(id2label: dict[Any, str] | None) -> dict[int, str] | None:
    # YAML and JSON give the keys as strings.
    if id2label is None:
        return None
    try:
        mapping = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError) as error:
        raise ValueError(f"id2label keys must be class ids (integers), got {sorted(id2label)[:5]}") from error
    if sorted(mapping) != list(range(len(mapping))):
        raise ValueError(f"id2label must name the classes 0..{len(mapping) - 1}, got ids {sorted(mapping)[:10]}")
    return mapping


def _is_classifier(config: Any) -> bool:
    """Whether a checkpoint holds a trained sequence-classification head (rather than a bare encoder)."""
    return any(str(name).endswith("ForSequenceClassification") for name in (config.architectures or []))


def _label_mismatch(checkpoint: str, ours: dict[int, str], theirs: dict[int, str]) -> str | None:
    """Why the checkpoint's label names differ from the data's, or None where they agree (or are unnamed)."""
    theirs = {int(k): v for k, v in theirs.items()}
    if all(_GENERIC_LABEL.match(name) for name in theirs.values()):
        return None  # the checkpoint never named its labels: adopt the data's names
    differing = [i for i in sorted(ours) if theirs.get(i) != ours[i]]
    if not differing:
        return None
    if set(theirs.values()) == set(ours.values()):
        what = "the same names in a different order"
    else:
        missing = sorted(set(ours.values()) - set(theirs.values()))[:5]
        what = f"names the checkpoint lacks, e.g. {missing}"
    examples = ", ".join(
        f"id {i}: {theirs.get(i)!r} in the checkpoint vs {ours[i]!r} in the data" for i in differing[:3]
    )
    return (
        f"checkpoint {checkpoint!r} has label names that differ from the data's: the data has {what} "
        f"({len(differing)} ids differ; {examples}). Use the data the checkpoint was fine-tuned on, or set "
        "reinitialize_head: true to train a new head"
    )


def _reset_head(model: nn.Module) -> None:
    """Fresh weights for every module outside the base encoder (the classification head), as Hugging Face draws them."""
    std = getattr(model.config, "initializer_range", 0.02)
    encoder = {id(module) for module in model.base_model.modules()}
    for module in model.modules():
        if module is model or id(module) in encoder:
            continue
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif hasattr(module, "reset_parameters"):
            module.reset_parameters()


class TransformerClassifier(nn.Module):
    """A Hugging Face ``AutoModelForSequenceClassification`` whose head predicts the data's classes.

    A checkpoint that already is a sequence classifier (its config lists a ``*ForSequenceClassification``
    architecture, e.g. ``transformersbook/bert-base-uncased-finetuned-clinc``) keeps its trained head, and must then
    predict exactly the data's classes: a different label count, or different label names, is refused with a message
    that says which. A bare encoder (``bert-base-uncased``, the MiniLM checkpoint) gets a fresh head of
    ``num_classes`` outputs. The label names (``id2label``) are written into the model's config, so a saved or
    exported model carries them.

    ``forward`` takes the tokenizer's output as keyword arguments and returns the Hugging Face output object (with
    ``.logits``, and ``.hidden_states`` / ``.attentions`` when asked). ``token_type_ids`` are dropped for models that
    take none (DistilBERT), so any tokenizer's output can be passed.

    Args:
        checkpoint: Hub name or local folder of a Hugging Face model.
        num_classes: Classes of the data; linked from ``data.num_classes`` by the CLI. Required for a bare encoder.
        id2label: Class id -> label name; linked from ``data.id2label`` by the CLI.
        reinitialize_head: Replace a checkpoint's trained classification head by a fresh one (to fine-tune a
            classifier of another task on this data).
        attn_implementation: ``"sdpa"`` (fast) or ``"eager"``; only ``"eager"`` can return attention maps, which the
            attention-map distillation loss needs. None keeps the transformers default.
    """

    def __init__(
        self,
        checkpoint: str,
        num_classes: int | None = None,
        id2label: dict[int, str] | None = None,
        reinitialize_head: bool = False,
        attn_implementation: Literal["eager", "sdpa"] | None = None,
    ) -> None:
        super().__init__()
        from transformers import AutoConfig, AutoModelForSequenceClassification

        id2label = _normalize_id2label(id2label)
        if num_classes is not None and num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if id2label is not None and num_classes is not None and len(id2label) != num_classes:
            raise ValueError(f"id2label names {len(id2label)} classes but num_classes is {num_classes}")
        if num_classes is None and id2label is not None:
            num_classes = len(id2label)
        try:
            config = from_pretrained(AutoConfig, checkpoint, "checkpoint")
        except OSError as error:
            hint = "" if Path(checkpoint).exists() else " (offline, pass a local folder such as ../shared/models/...)"
            raise OSError(f"could not load the config of checkpoint {checkpoint!r}{hint}: {error}") from error
        kwargs: dict[str, Any] = {}
        if attn_implementation is not None:
            kwargs["attn_implementation"] = attn_implementation
        if _is_classifier(config) and not reinitialize_head:
            if num_classes is not None and config.num_labels != num_classes:
                raise ValueError(
                    f"checkpoint {checkpoint!r} is a classifier of {config.num_labels} labels but the data has "
                    f"{num_classes} classes; use the data it was fine-tuned on, or set reinitialize_head: true to "
                    "train a new head"
                )
            if id2label is not None:
                problem = _label_mismatch(checkpoint, id2label, config.id2label)
                if problem:
                    raise ValueError(problem)
                config.id2label = id2label
                config.label2id = {name: i for i, name in id2label.items()}
            model = from_pretrained(
                AutoModelForSequenceClassification, checkpoint, "checkpoint", config=config, **kwargs
            )
        else:
            if num_classes is None:
                raise ValueError(
                    f"checkpoint {checkpoint!r} has no classification head, so num_classes is required (the CLI "
                    "links it from data.num_classes)"
                )
            id2label = id2label or {i: f"LABEL_{i}" for i in range(num_classes)}
            model = from_pretrained(
                AutoModelForSequenceClassification,
                checkpoint,
                "checkpoint",
                num_labels=num_classes,
                id2label=id2label,
                label2id={name: i for i, name in id2label.items()},
                ignore_mismatched_sizes=reinitialize_head,
                **kwargs,
            )
        if reinitialize_head and _is_classifier(config):
            _reset_head(model)  # where the sizes matched, from_pretrained loaded the old head
        self.model = model
        self.num_classes = int(model.config.num_labels)
        self._takes_token_type_ids = "token_type_ids" in inspect.signature(model.forward).parameters

    @property
    def config(self) -> Any:
        """The Hugging Face config (labels, sizes, layer count)."""
        return self.model.config

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> Any:
        inputs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None and self._takes_token_type_ids:
            inputs["token_type_ids"] = token_type_ids
        if output_hidden_states:
            inputs["output_hidden_states"] = True
        if output_attentions:
            inputs["output_attentions"] = True
        return self.model(**inputs)

    def save_pretrained(self, path: str | Path, tokenizer: Any = None) -> None:
        """Save the model (and ``tokenizer``, when given) so ``TransformerClassifier(path)`` loads it back."""
        self.model.save_pretrained(str(path))
        if tokenizer is not None:
            tokenizer.save_pretrained(str(path))


def _layer_list(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``nn.ModuleList`` of a transformer's layers (``bert.encoder.layer``, ``distilbert.transformer.layer``)."""
    count = model.config.num_hidden_layers
    for name, module in model.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) == count
            and name.rsplit(".", 1)[-1] in ("layer", "layers")
        ):
            return name, module
    raise ValueError(f"cannot find the list of {count} transformer layers in {type(model).__name__}")


def keep_layers(model: nn.Module, layers: list[int]) -> nn.Module:
    """Keep only ``layers`` (0-based, increasing) of a Hugging Face transformer, in place, and update its config.

    Embeddings, pooler and classification head are kept. This is DistilBERT's initialisation when ``layers`` are
    every other layer of the teacher.

    Raises:
        ValueError: ``layers`` is empty, not increasing, or names a layer the model does not have.
    """
    name, module_list = _layer_list(model)
    count = len(module_list)
    if not layers:
        raise ValueError("layers must name at least one layer to keep")
    bad = [i for i in layers if not 0 <= i < count]
    if bad:
        raise ValueError(f"layers {layers} name layers {bad} that do not exist: the model has {count} (0..{count - 1})")
    if any(b <= a for a, b in itertools.pairwise(layers)):
        raise ValueError(f"layers must be increasing without repeats, got {layers}")
    kept = nn.ModuleList(module_list[i] for i in layers)
    for new_index, layer in enumerate(kept):
        for sub in layer.modules():
            if hasattr(sub, "layer_idx"):
                sub.layer_idx = new_index
    parent_name, _, attribute = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attribute, kept)
    if hasattr(parent, "n_layers"):  # DistilBERT's Transformer keeps its own count
        parent.n_layers = len(layers)
    model.config.num_hidden_layers = len(layers)
    return model


class StudentFromTeacher(TransformerClassifier):
    """A student made from a teacher checkpoint by keeping some of its layers (DistilBERT's initialisation).

    E.g. ``layers: [0, 2, 4]`` of the 6-layer MiniLM gives a 3-layer student with the teacher's embeddings and, where
    the checkpoint is a fine-tuned classifier, its head. Save it with ``save_pretrained``; it loads back as a
    :class:`TransformerClassifier` of ``len(layers)`` layers.

    Args:
        checkpoint: Hub name or local folder of the teacher.
        layers: The teacher's layers to keep, 0-based and increasing.
        num_classes: Classes of the data; linked from ``data.num_classes`` by the CLI.
        id2label: Class id -> label name; linked from ``data.id2label`` by the CLI.
        reinitialize_head: Replace a trained classification head by a fresh one.
        attn_implementation: ``"sdpa"`` or ``"eager"`` (needed by the attention-map loss); None keeps the default.
        teacher_weights: The fine-tuned teacher as a Lightning checkpoint of ``ClassifierModule`` (or a plain state
            dict) of the model ``checkpoint`` builds, loaded before the layers are cut: the student then starts from
            the fine-tuned layers and head, not the pretrained ones (on CLINC150 this is what makes a 3-layer MiniLM
            student nearly as accurate as its teacher). None: ``checkpoint``'s own weights.
    """

    def __init__(
        self,
        checkpoint: str,
        layers: list[int],
        num_classes: int | None = None,
        id2label: dict[int, str] | None = None,
        reinitialize_head: bool = False,
        attn_implementation: Literal["eager", "sdpa"] | None = None,
        teacher_weights: str | None = None,
    ) -> None:
        super().__init__(checkpoint, num_classes, id2label, reinitialize_head, attn_implementation)
        if teacher_weights is not None:
            from lightning_distill.core.models.weights import load_teacher_weights

            load_teacher_weights(self, teacher_weights, argument="teacher_weights")
        keep_layers(self.model, list(layers))


def check_tokenizer_fits(tokenizer_size: int, model: nn.Module, what: str = "model") -> None:
    """Raise if a tokenizer of ``tokenizer_size`` tokens can produce ids past ``model``'s embedding table.

    Args:
        tokenizer_size: ``len(tokenizer)``, added tokens included.
        model: A model with ``get_input_embeddings()`` (others are not checked).
        what: How to name the model in the message (``"student"``, ``"teacher"``).
    """
    get_embeddings = getattr(model, "get_input_embeddings", None)
    if get_embeddings is None:
        return
    rows = get_embeddings().num_embeddings
    if tokenizer_size > rows:
        raise ValueError(
            f"the tokenizer has {tokenizer_size} tokens but the {what}'s embedding table has {rows} rows, so token ids "
            f">= {rows} would index past it; use the tokenizer that belongs to the {what}'s checkpoint"
        )
