"""From a checkpoint to the model a deployment ships: the one way the CLI, the callbacks and the recipes take it.

Plain PyTorch (no Lightning import): it works on any LightningModule, ours or a user's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lightning_distill.core.models.weights import describe_prefixes, normalize_prefix, prefixes_holding, under_prefix
from lightning_distill.core.pruning.serialization import resize_to_state_dict
from lightning_distill.core.safe_load import load_file
from lightning_distill.lightning.modules._attribute import resolve_model_attribute

__all__ = ["deployable_model", "load_deployable"]


def deployable_model(module: nn.Module, model_attribute: str = "auto") -> nn.Module:
    """The model inside ``module`` that a deployment would ship (``student``, ``model``, or ``model_attribute``)."""
    return resolve_model_attribute(module, model_attribute, "deployable_model")[1]


def load_deployable(
    module: nn.Module,
    checkpoint: str | Path | Mapping[str, Any] | None,
    model_attribute: str = "auto",
    what: str = "checkpoint",
    checkpoint_prefix: str | None = None,
) -> nn.Module:
    """The deployable model of ``module`` with the weights of ``checkpoint``, in eval mode.

    The model is found by ``model_attribute`` (see
    :func:`~lightning_distill.lightning.modules._attribute.resolve_model_attribute`: ``auto``, ``self`` or a dotted
    path); its weights are the checkpoint's entries under that path (or under ``checkpoint_prefix``), loaded strictly
    after resizing the layers a structurally pruned checkpoint has made smaller. Where the checkpoint holds nothing
    under that path (it was saved by a LightningModule that named the model otherwise, e.g. ``backbone``, or is the
    model's plain ``state_dict``), the one top-level prefix holding exactly the model's keys is taken. The model is
    changed in place (it is ``module``'s own submodule); pass a copy to keep ``module`` as it is.

    Args:
        module: The LightningModule built from the config the checkpoint was trained with (or any ``nn.Module``).
        checkpoint: A Lightning checkpoint file (read with ``weights_only=True``), an already loaded checkpoint dict
            or ``state_dict``, or None to keep the weights ``module`` has.
        model_attribute: Where the model lives in ``module``.
        what: How error messages name the checkpoint (the option the user set).
        checkpoint_prefix: The prefix of the model's keys in the checkpoint (e.g. ``backbone``; ``""`` for none);
            None takes the model's path in ``module``, or the one prefix that fits.

    Raises:
        ValueError: the checkpoint is unsafe or unreadable, holds no weights for the model (the message lists its
            prefixes), or does not fit it (the message names the tensor and both shapes).
    """
    path, model = resolve_model_attribute(module, model_attribute, what)
    if checkpoint is not None:
        loaded = checkpoint if isinstance(checkpoint, Mapping) else load_file(checkpoint, what)
        state = loaded.get("state_dict", loaded)
        own = _model_weights(state, model, f"{path}." if path else "", checkpoint_prefix, what)
        resize_to_state_dict(model, own)
        model.load_state_dict(own, strict=True)
    return model.eval()


def _model_weights(
    state: Mapping[str, Any], model: nn.Module, prefix: str, checkpoint_prefix: str | None, what: str
) -> dict[str, Any]:
    """The entries under ``checkpoint_prefix``, else under ``prefix``, else under the one prefix that fits."""
    if checkpoint_prefix is not None:
        prefix = normalize_prefix(checkpoint_prefix)
    own = under_prefix(state, prefix)
    fits = prefixes_holding(state, model.state_dict().keys()) if not own and checkpoint_prefix is None else []
    if len(fits) == 1:
        return under_prefix(state, fits[0])
    if not own:
        several = f"the model's keys fit under each of {fits}; " if fits else ""
        raise ValueError(
            f"{what} holds no weights under {prefix or 'the top level'!r} for {type(model).__name__} (whose keys "
            f"start with e.g. {sorted(model.state_dict())[:3]}); {several}its top-level prefixes are: "
            f"{describe_prefixes(state)}. Set model_attribute to the part of the LightningModule the checkpoint "
            "trained, or pass checkpoint_prefix (load_deployable) to name the prefix that holds its weights"
        )
    return own
