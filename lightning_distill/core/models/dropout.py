"""Dropout as an explicit setting: one probability for every dropout layer of a model, its saved config included.

Hugging Face models keep their dropout probabilities in two places: the ``nn.Dropout`` modules (their attention reads
``self.dropout.p`` too) and the config fields that ``save_pretrained`` writes (``hidden_dropout_prob``,
``attention_probs_dropout_prob``, DistilBERT's ``dropout``/``attention_dropout``, ...). :func:`set_dropout` sets both,
so a model saved after training reloads with the dropout it was trained with.
"""

from __future__ import annotations

from torch import nn

__all__ = ["check_dropout", "dropout_probabilities", "set_dropout"]

# Config fields that hold a dropout probability but are not named like one.
_EXTRA_CONFIG_FIELDS = ("seq_classif_dropout",)


def check_dropout(value: float | None, argument: str = "dropout") -> None:
    """Raise unless ``value`` is None (keep the model's own) or a probability in [0, 1)."""
    if value is not None and not 0.0 <= value < 1.0:
        raise ValueError(f"{argument} must be None (keep the model's own probabilities) or in [0, 1), got {value}")


def set_dropout(model: nn.Module, probability: float) -> int:
    """Set the probability of every ``nn.Dropout*`` module of ``model`` and of its Hugging Face config's dropout fields.

    ``probability=0`` turns dropout off while the model stays in train mode (so layers such as BatchNorm still
    train). Returns the number of dropout modules changed.
    """
    check_dropout(probability)
    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            module.p = probability
            changed += 1
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        for key, value in config.to_dict().items():
            if ("dropout" in key or key in _EXTRA_CONFIG_FIELDS) and isinstance(value, float):
                setattr(config, key, probability)
    return changed


def dropout_probabilities(model: nn.Module) -> list[float]:
    """The probability of each dropout module of ``model``, in module order."""
    return [m.p for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
