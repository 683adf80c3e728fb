"""Saving and loading a structurally pruned model, whose layer sizes no longer match its architecture's defaults.

Format of a saved pruned model (a folder):

- ``model.pt``: ``torch.save(model.state_dict())``, loadable with ``torch.load(..., weights_only=True)``.
- ``pruned.json``: ``{"format": "lightning-distill-pruned", "version": 1, "model_class": "<module>.<Class>",
  "parameters": <int>, "linear_shapes": {"<module name>": [out_features, in_features], ...},
  "attention_heads": {"<attention module name>": <heads>, ...}}`` with every Linear of the model (pruned or not)
  and the head count of every attention module whose heads can be pruned.
- ``config.json``: for Hugging Face models, the *unpruned* config (``model.config.save_pretrained``), so the
  architecture can be rebuilt offline; the pruned sizes are those of ``pruned.json``, not of the config.

To load, build the unpruned architecture (``MLP(...)``, or ``AutoModelForSequenceClassification.from_config(
AutoConfig.from_pretrained(folder))``) and call :func:`load_pruned`, which shrinks its Linears to the saved sizes and
loads the weights strictly.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.pruning.structured import find_unit_groups, set_head_count
from lightning_distill.safe_load import load_file

FORMAT = "lightning-distill-pruned"
VERSION = 1
WEIGHTS_FILE = "model.pt"
SHAPES_FILE = "pruned.json"


def _attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Self-attention modules whose head count follows their query projection (BERT-style and DistilBERT)."""
    found = {}
    for name, module in model.named_modules():
        query = getattr(module, "query", None) or getattr(module, "q_lin", None)
        if isinstance(query, nn.Linear) and hasattr(module, "attention_head_size"):
            found[name] = module
    return found


def _query(attention: nn.Module) -> nn.Linear:
    return getattr(attention, "query", None) or attention.q_lin


def pruned_shapes(model: nn.Module) -> dict[str, Any]:
    """The per-layer sizes written to ``pruned.json``."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
        "parameters": sum(p.numel() for p in model.parameters()),
        "linear_shapes": {
            n: [m.out_features, m.in_features] for n, m in model.named_modules() if isinstance(m, nn.Linear)
        },
        "attention_heads": {
            n: _query(m).out_features // m.attention_head_size for n, m in _attention_modules(model).items()
        },
    }


def _resize_linear(linear: nn.Linear, out_features: int, in_features: int) -> None:
    if (linear.out_features, linear.in_features) == (out_features, in_features):
        return
    weight = linear.weight
    weight.data = torch.empty(out_features, in_features, dtype=weight.dtype, device=weight.device)
    weight.grad = None
    if linear.bias is not None:
        linear.bias.data = torch.empty(out_features, dtype=linear.bias.dtype, device=linear.bias.device)
        linear.bias.grad = None
    linear.out_features, linear.in_features = out_features, in_features


def resize_to_shapes(model: nn.Module, linear_shapes: Mapping[str, Any]) -> list[str]:
    """Shrink (or grow) the named Linears of ``model`` to ``{name: [out, in]}`` and fix attention head counts.

    The resized weights are uninitialised: load a state dict afterwards. Returns the names of the resized Linears.
    """
    modules = dict(model.named_modules())
    resized = []
    for name, (out_features, in_features) in linear_shapes.items():
        linear = modules.get(name)
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"the saved pruned model has a Linear {name!r} that the model does not have")
        if (linear.out_features, linear.in_features) != (out_features, in_features):
            _resize_linear(linear, int(out_features), int(in_features))
            resized.append(name)
    for attention in _attention_modules(model).values():
        set_head_count(attention, _query(attention).out_features // attention.attention_head_size)
    return resized


def resize_to_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], prefix: str = "") -> list[str]:
    """Resize the Linears of ``model`` whose weight in ``state_dict`` (keys under ``prefix``) has another shape.

    Used to load a checkpoint of a structurally pruned model into a freshly built, unpruned one (the LightningModules
    call it in ``load_state_dict``). Only sizes that structured pruning can have changed are resized: the outputs of a
    Linear that produces prunable units (neurons, attention heads) and the inputs of the Linear that consumes them,
    and only downwards. Returns the names of the resized Linears (none when every shape already matches).

    Raises:
        ValueError: another shape differs (a model's inputs or classes, a non-Linear layer, a larger layer): the
            checkpoint is not a pruned version of this model. The message names the tensor and both shapes.
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
    shapes = {}
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
        weight = state_dict.get(f"{prefix}{name}.weight")
        if isinstance(weight, Tensor):
            shapes[name] = list(weight.shape)
    return resize_to_shapes(model, shapes)


def _prunable_dims(model: nn.Module) -> tuple[dict[int, set[int]], dict[str, str]]:
    """``{id(linear): dims structured pruning can shrink}`` (0: outputs, 1: inputs), and the Linears it leaves alone."""
    groups, skipped = find_unit_groups(model, include=("*",), exclude=(), include_frozen=True)
    dims: dict[int, set[int]] = {}
    for group in groups:
        for linear in group.producers:
            dims.setdefault(id(linear), set()).add(0)
        for linear in group.consumers:
            dims.setdefault(id(linear), set()).add(1)
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
    if not isinstance(module, nn.Linear):
        return f"{name or 'the model'} is a {type(module).__name__}, whose sizes structured pruning never changes"
    if len(saved) != len(current):
        return "the number of dimensions differs"
    for dim, (ours, theirs) in enumerate(zip(current, saved, strict=True)):
        side = "outputs" if dim == 0 else "inputs"
        if ours == theirs:
            continue
        if theirs > ours:
            return f"the checkpoint's {name} has more {side} ({theirs}) than the model's ({ours})"
        if dim not in prunable.get(id(module), set()):
            why = f" ({skipped[name]})" if name in skipped else ""
            return f"structured pruning never removes {side} of {name}{why}"
    return None


def save_pruned(model: nn.Module, folder: str | Path) -> Path:
    """Save a (pruned) model as ``folder/model.pt`` + ``folder/pruned.json`` (+ ``config.json`` for HF models)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, folder / WEIGHTS_FILE)
    (folder / SHAPES_FILE).write_text(json.dumps(pruned_shapes(model), indent=2) + "\n")
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "save_pretrained"):
        config.save_pretrained(folder)
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
    resize_to_shapes(model, meta["linear_shapes"])
    state = load_file(folder / WEIGHTS_FILE, "pruned model weights")
    model.load_state_dict(state, strict=True)
    return model
