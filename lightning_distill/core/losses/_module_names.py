"""Finding a submodule by its dotted name and reading the width of its output (plain PyTorch)."""

from __future__ import annotations

import difflib

from torch import nn

# Modules that keep the channel count of their input: a parameter-free layer of a Sequential (``features.2``, a ReLU)
# has the width of the last width-bearing layer before it when only these stand between them.
_WIDTH_PRESERVING = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.GELU,
    nn.SiLU,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Sigmoid,
    nn.Tanh,
    nn.Mish,
    nn.ELU,
    nn.Identity,
    nn.Dropout,
    nn.Dropout2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
)
# Layers whose output is a feature map (batch, channels, height, width): their projection is a 1x1 convolution.
_MAP_LAYERS = (nn.Conv2d, nn.ConvTranspose2d, nn.BatchNorm2d, nn.InstanceNorm2d)
_OTHER_LAYERS = (nn.Linear, nn.LayerNorm, nn.Embedding, nn.Conv1d, nn.Conv3d, nn.BatchNorm1d, nn.BatchNorm3d)
_SHOWN = 12
_CLOSEST = 6


def find_module(model: nn.Module, name: str, argument: str, side: str) -> nn.Module:
    """The submodule of ``model`` called ``name`` in ``model.named_modules()``.

    Args:
        model: The student or the teacher.
        name: A dotted module name, e.g. ``features.2`` or ``layer3.1.bn2``.
        argument: How error messages call the option that set ``name`` (``student_layer``).
        side: ``"student"`` or ``"teacher"``.

    Raises:
        ValueError: ``model`` has no module of that name; the message lists the names closest to it (else the first
            few of the model) and how many modules there are.
    """
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = [n for n in modules if n]
    hint = ""
    prefix = f"{side}."
    if name.startswith(prefix) and name[len(prefix) :] in modules:
        hint = f" (names are relative to the {side} model: drop the {prefix!r} prefix)"
    close = difflib.get_close_matches(name, names, n=_CLOSEST, cutoff=0.6)
    if close:
        shown = f"closest: {', '.join(close)}"
    else:
        more = f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else ""
        shown = f"its modules: {', '.join(names[:_SHOWN])}{more}"
    raise ValueError(
        f"{argument} {name!r} is not a module of the {side} ({type(model).__name__}){hint}; {shown}. Names are those "
        f"of {side}.named_modules()"
    )


def _own_width(module: nn.Module) -> int | None:
    for attribute in ("out_channels", "out_features", "num_features", "num_channels", "embedding_dim"):
        value = getattr(module, attribute, None)
        if isinstance(value, int):
            return value
    shape = getattr(module, "normalized_shape", None)  # LayerNorm
    if isinstance(shape, tuple) and shape and isinstance(shape[-1], int):
        return shape[-1]
    return None


def _preceding_in_sequential(model: nn.Module, name: str) -> nn.Module | None:
    """The nearest width-bearing sibling before a width-preserving module ``name`` inside an ``nn.Sequential``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    if not isinstance(parent, nn.Sequential):
        return None
    children = list(parent._modules.items())
    position = [key for key, _ in children].index(child)
    for _, sibling in reversed(children[:position]):
        if _width_source(sibling) is not None:
            return _width_source(sibling)
        if not isinstance(sibling, _WIDTH_PRESERVING):
            return None
    return None


def _width_source(module: nn.Module) -> nn.Module | None:
    """The module itself if it has a width, else the last width-bearing module inside it (registration order)."""
    if _own_width(module) is not None:
        return module
    for inner in reversed(list(module.modules())):
        if _own_width(inner) is not None:
            return inner
    return None


def _yields_maps(source: nn.Module) -> bool:
    """Whether the last layer of ``source`` (itself, or the last one registered inside it) is a 2-D map layer.

    Blocks such as torchvision's ``Conv2dNormActivation`` and ``InvertedResidual`` carry ``out_channels``
    themselves, so the layer type is read from inside them.
    """
    for inner in reversed(list(source.modules())):
        if isinstance(inner, _MAP_LAYERS):
            return True
        if isinstance(inner, _OTHER_LAYERS):
            return False
    return False


def output_width(model: nn.Module, name: str) -> tuple[int | None, bool]:
    """The channel count of the output of ``model``'s module ``name``, and whether that output is a feature map.

    Read from the module itself (``Conv2d.out_channels``, ``Linear.out_features``, ``BatchNorm.num_features``,
    ``LayerNorm``, ``GroupNorm``, ``Embedding``), else from the last such layer registered inside it (a ResNet stage:
    its last block's last BatchNorm), else, for an activation, dropout or pooling layer of an ``nn.Sequential``, from
    the last such layer before it. ``(None, False)`` where none of these applies.
    """
    module = model.get_submodule(name)
    source = _width_source(module)
    if source is None and isinstance(module, _WIDTH_PRESERVING):
        source = _preceding_in_sequential(model, name)
    if source is None:
        return None, False
    return _own_width(source), _yields_maps(source)
