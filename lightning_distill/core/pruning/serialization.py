"""Saving and loading a structurally pruned model, whose layer sizes no longer match its architecture's defaults.

Format of a saved pruned model (a folder):

- ``model.pt``: ``torch.save(model.state_dict())``, loadable with ``torch.load(..., weights_only=True)``.
- ``pruned.json``: ``{"format": "lightning-distill-pruned", "version": 1, "model_class": "<module>.<Class>",
  "parameters": <int>, "linear_shapes": {"<module name>": [out_features, in_features], ...},
  "conv_shapes": {"<module name>": [out_channels, in_channels, groups], ...}, "norm_shapes": {"<module name>":
  <features>, ...}, "attention_heads": {"<attention module name>": <heads>, ...}}`` with every Linear, convolution
  and BatchNorm/LayerNorm/GroupNorm of the model (pruned or not) and the head count of every attention module.
- ``config.json``: for Hugging Face models, the *unpruned* config (``model.config.save_pretrained``), so the
  architecture can be rebuilt offline; the pruned sizes are those of ``pruned.json``, not of the config.

To load, build the unpruned architecture (``MLP(...)``, or ``AutoModelForSequenceClassification.from_config(
AutoConfig.from_pretrained(folder))``) and call :func:`load_pruned`, which shrinks its layers to the saved sizes and
loads the weights strictly.

:func:`save_pruned` writes the folder whole (:func:`lightning_distill.core.atomic.replace_folder`): a save that fails (a
full disk) leaves the previous folder as it was, never a new ``model.pt`` beside an old ``pruned.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.core.atomic import replace_folder, write_torch
from lightning_distill.core.pruning.graph import HEAD_COUNTS, HEAD_SIZES, PRUNABLE, default_example_inputs
from lightning_distill.core.pruning.structured import _networks, find_unit_groups, set_head_count
from lightning_distill.core.safe_load import load_file

FORMAT = "lightning-distill-pruned"
VERSION = 1
WEIGHTS_FILE = "model.pt"
SHAPES_FILE = "pruned.json"
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def _head_size(module: nn.Module) -> int | None:
    return next((getattr(module, a) for a in HEAD_SIZES if isinstance(getattr(module, a, None), int)), None)


def _attention_modules(model: nn.Module) -> dict[str, tuple[nn.Module, nn.Linear]]:
    """Attention modules with a head count and head size, each with its query projection (its first Linear)."""
    found = {}
    for name, module in model.named_modules():
        if _head_size(module) and any(isinstance(getattr(module, a, None), int) for a in HEAD_COUNTS):
            query = next((m for m in module.modules() if isinstance(m, nn.Linear)), None)
            if query is not None:
                found[name] = (module, query)
    return found


def pruned_shapes(model: nn.Module) -> dict[str, Any]:
    """The per-layer sizes written to ``pruned.json``."""
    modules = list(model.named_modules())
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "linear_shapes": {n: [m.out_features, m.in_features] for n, m in modules if isinstance(m, nn.Linear)},
        "conv_shapes": {n: [m.out_channels, m.in_channels, m.groups] for n, m in modules if isinstance(m, _CONVS)},
        "norm_shapes": {n: _norm_size(m) for n, m in modules if isinstance(m, _NORMS)},
        "attention_heads": {n: q.out_features // _head_size(m) for n, (m, q) in _attention_modules(model).items()},
    }


def _norm_size(norm: nn.Module) -> int:
    if isinstance(norm, nn.LayerNorm):
        return int(norm.normalized_shape[-1])
    return int(norm.num_channels if isinstance(norm, nn.GroupNorm) else norm.num_features)


def _empty_like(param: Tensor | None, *shape: int) -> None:
    if param is not None:
        param.data = torch.empty(shape, dtype=param.dtype, device=param.device)
        if isinstance(param, nn.Parameter):
            param.grad = None


def _resize(module: nn.Module, shape: list[int]) -> bool:
    """Give ``module`` the sizes ``shape`` (as in ``pruned.json``), with uninitialised weights; False if unchanged."""
    if isinstance(module, nn.Linear):
        out, inp = shape
        if (module.out_features, module.in_features) == (out, inp):
            return False
        _empty_like(module.weight, out, inp)
        _empty_like(module.bias, out)
        module.out_features, module.in_features = out, inp
    elif isinstance(module, _CONVS):
        out, inp, groups = shape
        if (module.out_channels, module.in_channels, module.groups) == (out, inp, groups):
            return False
        _empty_like(module.weight, out, inp // groups, *module.kernel_size)
        _empty_like(module.bias, out)
        module.out_channels, module.in_channels, module.groups = out, inp, groups
    else:
        (size,) = shape
        if _norm_size(module) == size:
            return False
        for tensor in (module.weight, module.bias, getattr(module, "running_mean", None)):
            _empty_like(tensor, size)
        if getattr(module, "running_var", None) is not None:
            module.running_var.data = torch.ones(size, device=module.running_var.device)
        if isinstance(module, nn.LayerNorm):
            module.normalized_shape = (*module.normalized_shape[:-1], size)
        elif isinstance(module, nn.GroupNorm):
            module.num_channels = size
        else:
            module.num_features = size
    return True


def resize_to_shapes(
    model: nn.Module,
    linear_shapes: Mapping[str, Any],
    conv_shapes: Mapping[str, Any] | None = None,
    norm_shapes: Mapping[str, Any] | None = None,
) -> list[str]:
    """Resize the named layers of ``model`` (``{name: [out, in]}``, ``{name: [out, in, groups]}``, ``{name: size}``)
    and fix attention head counts.

    The resized weights are uninitialised: load a state dict afterwards. Returns the names of the resized layers.
    """
    modules = dict(model.named_modules())
    resized = []
    kinds = ((linear_shapes, nn.Linear, "Linear"), (conv_shapes or {}, _CONVS, "convolution"))
    for shapes, cls, what in (*kinds, (norm_shapes or {}, _NORMS, "normalisation layer")):
        for name, shape in shapes.items():
            module = modules.get(name)
            if not isinstance(module, cls):
                raise ValueError(f"the saved pruned model has a {what} {name!r} that the model does not have")
            if _resize(module, [int(v) for v in (shape if isinstance(shape, list) else [shape])]):
                resized.append(name)
    for attention, query in _attention_modules(model).values():
        set_head_count(attention, query.out_features // _head_size(attention))
    return resized


def _shape_from_state(module: nn.Module, name: str, state: Mapping[str, Tensor], prefix: str) -> list[int] | None:
    weight = state.get(f"{prefix}{name}.weight")
    if not isinstance(weight, Tensor):
        return None
    if isinstance(module, nn.Linear):
        return list(weight.shape)
    if isinstance(module, _CONVS):
        depthwise = module.groups == module.in_channels == module.out_channels and module.groups > 1
        groups = weight.shape[0] if depthwise else module.groups
        return [weight.shape[0], weight.shape[1] * groups, groups]
    return [weight.shape[-1]]


def resize_to_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], prefix: str = "") -> list[str]:
    """Resize the layers of ``model`` whose tensors in ``state_dict`` (keys under ``prefix``) have other shapes.

    Used to load a checkpoint of a structurally pruned model into a freshly built, unpruned one (the LightningModules
    call it in ``load_state_dict``). Linear, convolution (groups included) and normalisation layers are resized, only
    downwards and only where structured pruning can have changed them: checked on the dependency graph for Hugging
    Face models and MLPs; for other networks, which cannot be traced without example inputs, every layer but the
    model's first inputs and last outputs. Returns the names of the resized layers (none when every shape matches).

    Raises:
        ValueError: another shape differs (a model's inputs or classes, an embedding, a larger layer): the checkpoint
            is not a pruned version of this model. The message names the tensor and both shapes.
    """
    own = model.state_dict()
    mismatched = {}
    for key, tensor in own.items():
        saved = state_dict.get(prefix + key)
        if isinstance(saved, Tensor) and saved.shape != tensor.shape:
            mismatched[key] = (tuple(saved.shape), tuple(tensor.shape))
    if not mismatched:
        return []
    prunable, skipped = _prunable_dims(model)
    modules = dict(model.named_modules())
    shapes: dict[str, dict[str, list[int]]] = {"linear": {}, "conv": {}, "norm": {}}
    for key, (saved, current) in mismatched.items():
        name, _, _ = key.rpartition(".")
        module = modules.get(name)
        reason = _why_not_pruned(name, module, saved, current, prunable, skipped)
        if reason is not None:
            raise ValueError(
                f"cannot load the checkpoint into {type(model).__name__}: its {prefix}{key} has shape {list(saved)} "
                f"but the model's has {list(current)}, and {reason}, so the checkpoint is not a structurally pruned "
                "version of this model; build the model with the architecture the checkpoint was trained with (the "
                "same classes, input size, layer sizes or Hugging Face config) and load it again"
            )
        shape = _shape_from_state(module, name, state_dict, prefix)
        if shape is not None:
            kind = "linear" if isinstance(module, nn.Linear) else "conv" if isinstance(module, _CONVS) else "norm"
            shapes[kind][name] = shape
    return resize_to_shapes(model, shapes["linear"], shapes["conv"], shapes["norm"])


def _prunable_dims(model: nn.Module) -> tuple[dict[int, set[int]], dict[str, str]]:
    """``{id(layer): dims structured pruning can shrink}`` (0: outputs, 1: inputs), and the layers it leaves alone."""
    dims: dict[int, set[int]] = {}
    skipped: dict[str, str] = {}
    untraced: list[tuple[str, nn.Module]] = []
    for name, network in _networks(model):
        prefix = f"{name}." if name else ""
        if isinstance(network, PRUNABLE) or default_example_inputs(network) is None:
            untraced += [
                (f"{prefix}{n}" if n else name, m) for n, m in network.named_modules() if isinstance(m, PRUNABLE)
            ]
            continue
        groups, left = find_unit_groups(network, include=("*",), exclude=(), include_frozen=True)
        skipped.update({f"{prefix}{n}": reason for n, reason in left.items()})
        for group in groups:
            for module, out, _, _ in group.items:
                if isinstance(module, PRUNABLE):
                    dims.setdefault(id(module), set()).add(0 if out else 1)
    # Without inputs to trace with, the first and last trainable layers (of all the untraced networks together: a
    # LightningModule may hold its network's parts directly) are taken to read the inputs and give the outputs.
    trainable = [(n, m) for n, m in untraced if m.weight.requires_grad] or untraced
    for _, module in untraced:
        dims[id(module)] = {0, 1}
    if trainable:
        dims[id(trainable[-1][1])].discard(0)
        dims[id(trainable[0][1])].discard(1)
        skipped[trainable[-1][0]] = "it is the last layer, taken to produce the model's outputs"
        skipped.setdefault(trainable[0][0], "it is the first layer, taken to read the model's inputs")
    return dims, skipped


def _why_not_pruned(
    name: str,
    module: nn.Module | None,
    saved: tuple[int, ...],
    current: tuple[int, ...],
    prunable: dict[int, set[int]],
    skipped: dict[str, str],
) -> str | None:
    """Why structured pruning cannot have turned the model's ``current`` shape into the checkpoint's ``saved``."""
    if isinstance(module, _NORMS) and len(saved) == len(current) == 1 and saved[0] < current[0]:
        return None  # follows the layer before it, checked on that layer
    if not isinstance(module, PRUNABLE):
        return f"{name or 'the model'} is a {type(module).__name__}, whose sizes structured pruning never changes"
    if len(saved) != len(current):
        return "the number of dimensions differs"
    for dim, (ours, theirs) in enumerate(zip(current[:2], saved[:2], strict=True)):
        side = "outputs" if dim == 0 else "inputs"
        if ours == theirs:
            continue
        if theirs > ours:
            return f"the checkpoint's {name} has more {side} ({theirs}) than the model's ({ours})"
        depthwise = dim == 1 and isinstance(module, _CONVS) and module.groups == module.in_channels and saved[1] == 1
        if dim not in prunable.get(id(module), set()) and not depthwise:
            why = f" ({skipped[name]})" if name in skipped else ""
            return f"structured pruning never removes {side} of {name}{why}"
    if saved[2:] != current[2:]:
        return f"the kernel size of {name} differs"
    return None


def save_pruned(model: nn.Module, folder: str | Path) -> Path:
    """Save a (pruned) model as ``folder/model.pt`` + ``folder/pruned.json`` (+ ``config.json`` for HF models).

    The folder is replaced as a whole, so files of an earlier save that this one lacks are gone; on failure (a full
    disk: :class:`~lightning_distill.core.atomic.WriteError` naming the folder) the earlier folder is kept unchanged.
    """
    folder = Path(folder)
    with replace_folder(folder) as fresh:
        write_torch(fresh / WEIGHTS_FILE, {k: v.detach().cpu() for k, v in model.state_dict().items()})
        (fresh / SHAPES_FILE).write_text(json.dumps(pruned_shapes(model), indent=2) + "\n")
        config = getattr(model, "config", None)
        if config is not None and hasattr(config, "save_pretrained"):
            config.save_pretrained(fresh)
    return folder


def load_pruned(model: nn.Module, folder: str | Path) -> nn.Module:
    """Load a model saved by :func:`save_pruned` into ``model``, a freshly built instance of the unpruned architecture.

    Raises:
        FileNotFoundError: ``folder`` lacks ``model.pt`` or ``pruned.json``.
        ValueError: the files are not of this format, or do not fit ``model``.
    """
    folder = Path(folder)
    for file in (WEIGHTS_FILE, SHAPES_FILE):
        if not (folder / file).is_file():
            raise FileNotFoundError(f"{folder / file} does not exist; save the pruned model with save_pruned first")
    meta = json.loads((folder / SHAPES_FILE).read_text())
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ValueError(
            f"{folder / SHAPES_FILE} is not a {FORMAT} file of version {VERSION} "
            f"(format={meta.get('format')!r}, version={meta.get('version')!r})"
        )
    resize_to_shapes(model, meta["linear_shapes"], meta.get("conv_shapes"), meta.get("norm_shapes"))
    state = load_file(folder / WEIGHTS_FILE, "pruned model weights")
    model.load_state_dict(state, strict=True)
    return model
