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


def select_weights(
    model: nn.Module,
    include: Sequence[str] = ("*",),
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    layer_types: Sequence[str] = ("Linear",),
) -> tuple[dict[str, nn.Parameter], dict[str, str]]:
    """The ``weight`` parameters of the layers to prune, and the layers of those types left alone with the reason.

    Returns:
        ``(selected, skipped)``: ``selected`` maps the parameter name (``<module>.weight``) to the parameter;
        ``skipped`` maps a module name to why it was not selected.

    Raises:
        ValueError: no layer of ``layer_types`` matches; the message lists the layers that exist.
    """
    check_layer_types(layer_types)
    types = tuple(LAYER_TYPES[t] for t in layer_types)
    selected: dict[str, nn.Parameter] = {}
    skipped: dict[str, str] = {}
    for name, module in model.named_modules():
        if not isinstance(module, types) or not isinstance(getattr(module, "weight", None), nn.Parameter):
            continue
        reason = exclusion_reason(name, include, exclude, module.weight.requires_grad)
        if reason is None:
            selected[f"{name}.weight"] = module.weight
        else:
            skipped[name] = reason
    if not selected:
        found = ", ".join(list(skipped)[:20]) or "none"
        raise ValueError(
            f"include={list(include)} (exclude={list(exclude)}) selects no trainable {'/'.join(layer_types)} layer; "
            f"layers of that type in the model: {found}"
        )
    return selected, skipped
