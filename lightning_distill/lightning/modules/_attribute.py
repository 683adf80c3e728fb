"""Which submodule of a LightningModule is the deployable model: ``model_attribute`` of the post-fit callbacks.

Plain PyTorch (no Lightning), so the command line can find the same model as the callbacks.
"""

from __future__ import annotations

import re

from torch import nn

AUTO = "auto"
SELF = "self"
_PREFERRED = ("student", "model")
_PATH = re.compile(r"[A-Za-z_]\w*(\.\w+)*")


def check_model_attribute(owner: str, model_attribute: str) -> None:
    """Raise unless ``model_attribute`` is ``auto``, ``self`` or an attribute name / dotted path."""
    if not isinstance(model_attribute, str) or not _PATH.fullmatch(model_attribute):
        raise ValueError(
            f"{owner}: model_attribute must be 'auto', 'self' (the LightningModule itself) or the name or dotted path "
            f"of the submodule holding the model (e.g. 'net' or 'backbone.encoder'); got {model_attribute!r}"
        )


def child_modules(module: nn.Module) -> str:
    """``name (Type), ...`` of the direct child modules, for error messages."""
    children = [f"{name} ({type(child).__name__})" for name, child in module.named_children()]
    return ", ".join(children) or "none"


def _deployable_candidate(child: nn.Module) -> bool:
    """A child ``auto`` may pick: it has parameters and is neither a loss nor a torchmetrics metric."""
    is_loss = isinstance(child, nn.modules.loss._Loss)
    is_metric = type(child).__module__.startswith("torchmetrics.")
    return not is_loss and not is_metric and any(True for _ in child.parameters())


def resolve_model_attribute(module: nn.Module, model_attribute: str, owner: str) -> tuple[str, nn.Module]:
    """The path of the deployable model inside ``module`` (``""`` for the module itself) and the model.

    Args:
        module: The LightningModule (any ``nn.Module``).
        model_attribute: ``self`` for ``module`` itself; an attribute name or dotted path (``net``,
            ``backbone.encoder``); or ``auto``: ``student`` if it is an ``nn.Module``, else ``model``, else the one
            child module that has parameters and is not a loss (``torch.nn`` losses) or a torchmetrics metric.
        owner: Who asks, for the error messages.

    Raises:
        ValueError: the path names no ``nn.Module``, or ``auto`` finds none or several candidates; the message lists
            the module's child modules.
    """
    check_model_attribute(owner, model_attribute)
    if model_attribute == SELF:
        return "", module
    if model_attribute != AUTO:
        try:
            found = module.get_submodule(model_attribute)
        except AttributeError:
            value = getattr(module, model_attribute, None) if "." not in model_attribute else None
            what = f"is a {type(value).__name__}, not an nn.Module" if value is not None else "names no submodule"
            raise ValueError(
                f"{owner}: model_attribute {model_attribute!r} {what} of {type(module).__name__}; its child modules "
                f"are: {child_modules(module)}. Set model_attribute to one of them (a dotted path reaches deeper), "
                "or to 'self' for the LightningModule itself"
            ) from None
        return model_attribute, found
    for name in _PREFERRED:
        value = getattr(module, name, None)
        if isinstance(value, nn.Module):
            return name, value
    candidates = [(name, child) for name, child in module.named_children() if _deployable_candidate(child)]
    if len(candidates) == 1:
        return candidates[0]
    found_text = "none of them" if not candidates else f"{len(candidates)}: {', '.join(n for n, _ in candidates)}"
    raise ValueError(
        f"{owner}: model_attribute='auto' looks for a 'student' or 'model' nn.Module, then for the single child "
        f"module with parameters that is not a loss or metric, and found {found_text}. {type(module).__name__}'s "
        f"child modules are: {child_modules(module)}. Set model_attribute to the one that holds the trained model "
        "(a name or dotted path), or to 'self' for the LightningModule itself"
    )
