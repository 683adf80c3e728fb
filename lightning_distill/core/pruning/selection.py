"""Choosing which layers to prune by type and name pattern, and saying why the others were left alone.

Names are the dotted module names of ``model.named_modules()`` (``student.hidden.0``, ``model.bert.encoder.layer.0
.attention.self``); patterns are shell-style globs (``fnmatch``: ``*`` also matches dots).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Literal

from torch import nn

LayerType = Literal["Linear", "Conv1d", "Conv2d", "Conv3d", "Embedding"]
LAYER_TYPES: dict[str, type[nn.Module]] = {
    "Linear": nn.Linear,
    "Conv1d": nn.Conv1d,
    "Conv2d": nn.Conv2d,
    "Conv3d": nn.Conv3d,
    "Embedding": nn.Embedding,
}
# Our DistillationModule holds a frozen teacher under ``teacher.``: it must never be pruned.
DEFAULT_EXCLUDE = ("teacher.*", "*.teacher.*")


def check_patterns(name: str, patterns: Sequence[str] | None) -> None:
    """Raise if ``patterns`` (the argument called ``name``) is not a list of non-empty strings."""
    if patterns is None:
        return
    if isinstance(patterns, str) or not all(isinstance(p, str) and p for p in patterns):
        raise ValueError(f"{name} must be a list of non-empty glob patterns, got {patterns!r}")


def check_layer_types(layer_types: Sequence[str]) -> None:
    unknown = [t for t in layer_types if t not in LAYER_TYPES]
    if unknown or not layer_types:
        raise ValueError(f"layer_types must be a non-empty list of {sorted(LAYER_TYPES)}, got {list(layer_types)!r}")


def exclusion_reason(name: str, include: Sequence[str], exclude: Sequence[str], trainable: bool = True) -> str | None:
    """Why the layer called ``name`` is left alone, or ``None`` when it is selected."""
    for pattern in exclude:
        if fnmatchcase(name, pattern):
            return f"excluded by pattern {pattern!r}"
    if not any(fnmatchcase(name, pattern) for pattern in include):
        return f"matches no include pattern {list(include)}"
    if not trainable:
        return "frozen (requires_grad=False), e.g. a teacher"
    return None


def layer_type(module: nn.Module) -> str | None:
    """The :data:`LAYER_TYPES` name of ``module`` (``"Conv2d"``), or ``None`` for other modules."""
    return next((name for name, cls in LAYER_TYPES.items() if isinstance(module, cls)), None)


def layers_left_by_type(
    model: nn.Module, layer_types: Sequence[str], include: Sequence[str], exclude: Sequence[str], reason: str
) -> dict[str, str]:
    """The layers of :data:`LAYER_TYPES` not in ``layer_types``, each with why it is left alone.

    ``reason`` is formatted with ``kind`` (the layer's type); an exclude (or include) pattern that also leaves the
    layer alone is named instead, as the more direct cause.
    """
    chosen = tuple(LAYER_TYPES[t] for t in layer_types)
    left = {}
    for name, module in model.named_modules():
        kind = layer_type(module)
        if kind is not None and not isinstance(module, chosen):
            left[name] = exclusion_reason(name, include, exclude) or reason.format(kind=kind)
    return left


def describe_found(skipped: dict[str, str], limit: int = 20) -> str:
    """The layers a selection found and left alone, for an error message that nothing was selected."""
    if not skipped:
        return f"the model has no {', '.join(LAYER_TYPES)} layer"
    shown = list(skipped.items())[:limit]
    more = f" and {len(skipped) - limit} more" if len(skipped) > limit else ""
    reasons = "; ".join(f"{name}: {reason}" for name, reason in shown)
    return f"found {', '.join(name for name, _ in shown)}{more} ({reasons})"


def select_weights(
    model: nn.Module,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    layer_types: Sequence[str] = ("Linear",),
) -> tuple[dict[str, nn.Parameter], dict[str, str]]:
    """The ``weight`` parameters of the layers to prune, and every layer of :data:`LAYER_TYPES` left alone and why.

    Layers of a type not in ``layer_types`` (a Conv2d under the default ``["Linear"]``) are among the skipped ones.

    Returns:
        ``(selected, skipped)``: ``selected`` maps the parameter name (``<module>.weight``) to the parameter;
        ``skipped`` maps a module name to why it was not selected.

    Raises:
        ValueError: no layer of ``layer_types`` is selected; the message lists the layers found and why each was left.
    """
    check_layer_types(layer_types)
    types = tuple(LAYER_TYPES[t] for t in layer_types)
    selected: dict[str, nn.Parameter] = {}
    skipped: dict[str, str] = {}
    for name, module in model.named_modules():
        kind = layer_type(module)
        if kind is not None and not isinstance(module, types):
            skipped[name] = exclusion_reason(name, include, exclude) or (
                f"{kind} is not in layer_types={list(layer_types)}; add '{kind}' to layer_types to prune it"
            )
        if not isinstance(module, types) or not isinstance(getattr(module, "weight", None), nn.Parameter):
            continue
        reason = exclusion_reason(name, include, exclude, module.weight.requires_grad)
        if reason is None:
            selected[f"{name}.weight"] = module.weight
        else:
            skipped[name] = reason
    if not selected:
        raise ValueError(
            f"include={list(include)} (exclude={list(exclude)}) selects no trainable {'/'.join(layer_types)} layer; "
            f"{describe_found(skipped)}"
        )
    return selected, skipped
