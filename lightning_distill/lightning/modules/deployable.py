"""From a checkpoint to the model a deployment ships: the one way the CLI, the callbacks and the recipes take it.

Plain PyTorch (no Lightning import): it works on any LightningModule, ours or a user's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

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
) -> nn.Module:
    """The deployable model of ``module`` with the weights of ``checkpoint``, in eval mode.

    The model is found by ``model_attribute`` (see
    :func:`~lightning_distill.lightning.modules._attribute.resolve_model_attribute`: ``auto``, ``self`` or a dotted
    path); its weights are the checkpoint's entries under that path, loaded strictly after resizing the layers a
    structurally pruned checkpoint has made smaller. The model is changed in place (it is ``module``'s own submodule);
    pass a copy to keep ``module`` as it is.

    Args:
        module: The LightningModule built from the config the checkpoint was trained with (or any ``nn.Module``).
        checkpoint: A Lightning checkpoint file (read with ``weights_only=True``), an already loaded checkpoint dict
            or ``state_dict``, or None to keep the weights ``module`` has.
        model_attribute: Where the model lives in ``module``.
        what: How error messages name the checkpoint (the option the user set).

    Raises:
        ValueError: the checkpoint is unsafe or unreadable, holds no weights for the model, or does not fit it (the
            message names the tensor and both shapes).
    """
    path, model = resolve_model_attribute(module, model_attribute, what)
    if checkpoint is not None:
        loaded = checkpoint if isinstance(checkpoint, Mapping) else load_file(checkpoint, what)
        state = loaded.get("state_dict", loaded)
        prefix = f"{path}." if path else ""
        own = {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}
        if not own:
            raise ValueError(
                f"{what} holds no weights under {prefix or 'the top level'!r} for {type(model).__name__} (its keys "
                f"start with e.g. {sorted(state)[:3]}); set model_attribute to the part of the LightningModule the "
                "checkpoint trained"
            )
        resize_to_state_dict(model, own)
        model.load_state_dict(own, strict=True)
    return model.eval()
