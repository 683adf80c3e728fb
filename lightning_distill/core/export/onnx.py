"""Export a PyTorch classifier to ONNX with its label names, checked against PyTorch on the example batch."""

from __future__ import annotations

import copy
import inspect
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import staged_file
from lightning_distill.core.batch import output_logits
from lightning_distill.core.export.config import OnnxExportConfig
from lightning_distill.core.export.metadata import LABELS_KEY, label_names_of, write_metadata
from lightning_distill.core.export.parity import check_parity


class _Logits(nn.Module):
    """Calls the model with named inputs in a fixed order and returns its logits tensor (not a model output object)."""

    def __init__(self, model: nn.Module, names: Sequence[str], keyword: bool) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.keyword = keyword

    def forward(self, *inputs: Tensor) -> Tensor:
        output = self.model(**dict(zip(self.names, inputs, strict=True))) if self.keyword else self.model(*inputs)
        return output_logits(output)


def _as_named(
    example_inputs: Tensor | Mapping[str, Tensor], config: OnnxExportConfig
) -> tuple[dict[str, Tensor], bool]:
    """The example inputs as an ordered name -> tensor dict, and whether the model takes them as keywords."""
    if isinstance(example_inputs, Mapping):
        names = list(config.input_names or example_inputs.keys())
        unknown = sorted(set(example_inputs) - set(names))
        missing = [n for n in names if n not in example_inputs]
        if unknown or missing:
            raise ValueError(
                f"OnnxExportConfig.input_names {names} do not match the example inputs {sorted(example_inputs)}"
            )
        return {n: example_inputs[n] for n in names}, True
    if isinstance(example_inputs, Tensor):
        names = list(config.input_names or ["input"])
        if len(names) != 1:
            raise ValueError(f"OnnxExportConfig.input_names {names} names {len(names)} inputs but one tensor was given")
        return {names[0]: example_inputs}, False
    raise TypeError(f"example_inputs must be a tensor or a dict of tensors; got {type(example_inputs).__name__}")


def _check_signature(model: nn.Module, named: dict[str, Tensor], keyword: bool) -> None:
    """Fail when ``forward`` needs inputs the exporter was not given, or is given names it does not take."""
    parameters = inspect.signature(model.forward).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters) and keyword:
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if any(p.kind is p.VAR_POSITIONAL for p in parameters) and not keyword:
        return
    required = [p.name for p in parameters if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    given = list(named) if keyword else [p.name for p in positional[: len(named)]]
    missing = [name for name in required if name not in given]
    if missing:
        raise ValueError(
            f"{type(model).__name__}.forward takes inputs the exporter was not told about: {missing} (required, no "
            f"default); the example inputs give {list(named)}. Add them to example_inputs (a dict for keyword inputs)"
        )
    if keyword:
        accepted = {p.name for p in parameters}
        unknown = [name for name in named if name not in accepted]
        if unknown:
            raise ValueError(f"{type(model).__name__}.forward does not take {unknown}; it takes {sorted(accepted)}")
    elif len(named) > len(positional):
        raise ValueError(f"{type(model).__name__}.forward takes {len(positional)} inputs but {len(named)} were given")


def _dynamic_axes(named: dict[str, Tensor], config: OnnxExportConfig) -> dict[str, dict[int, str]]:
    axes: dict[str, dict[int, str]] = {}
    for name, tensor in named.items():
        spec: dict[int, str] = {}
        if config.dynamic_batch and tensor.dim() >= 1:
            spec[0] = "batch"
        if config.dynamic_sequence and tensor.dim() == 2 and not tensor.is_floating_point():
            spec[1] = "sequence"
        if spec:
            axes[name] = spec
    if config.dynamic_batch:
        axes.update({name: {0: "batch"} for name in config.output_names})
    return axes


def export_onnx(
    model: nn.Module,
    config: OnnxExportConfig,
    example_inputs: Tensor | Mapping[str, Tensor],
    path: str | Path,
    label_names: Sequence[str] | None = None,
) -> Path:
    """Export ``model`` (a copy in eval mode) to ``path`` and check ONNX Runtime against PyTorch on the example.

    Args:
        model: A float classifier returning logits (or an output with ``.logits``, e.g. a Hugging Face model).
        config: Opset, names, dynamic axes, exporter and parity tolerance.
        example_inputs: One real batch: a tensor (images), or a dict of tensors passed as keyword arguments
            (``input_ids``, ``attention_mask``, ...). Every input the graph takes must be here.
        path: Where to write the ``.onnx`` file (folders are created).
        label_names: Class names by id, stored in the model metadata under ``id2label`` (JSON); by default taken from
            a Hugging Face model's ``config.id2label``.

    Returns:
        ``path``.

    Raises:
        ValueError: ``forward`` needs an input missing from ``example_inputs`` or does not take one given; the input
            names do not match the example.
        OnnxParityError: the exported graph differs from PyTorch by more than ``config.parity_atol`` on the example.
    """
    require("onnx", "export_onnx")
    if config.dynamo:
        require("onnxscript", "export_onnx(dynamo=True)")
    named, keyword = _as_named(example_inputs, config)
    _check_signature(model, named, keyword)
    model = copy.deepcopy(model).float().eval()
    wrapper = _Logits(model, list(named), keyword).eval()
    path = Path(path)
    args = tuple(named.values())
    # Written under its own name in a folder beside ``path``, then moved there with any external data (named after it),
    # so an interrupted export or a full disk leaves the previous graph or none, never a partial one.
    with staged_file(path) as staged, warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the TorchScript exporter
        # The two exporters share their arguments but for how dynamic dimensions are declared.
        if config.dynamo:
            mode = {"external_data": False, "dynamic_shapes": _dynamic_shapes(named, config), "verbose": False}
        else:
            mode = {"dynamic_axes": _dynamic_axes(named, config), "do_constant_folding": True}
        torch.onnx.export(
            wrapper,
            args,
            str(staged),
            input_names=list(named),
            output_names=list(config.output_names),
            opset_version=config.opset,
            dynamo=config.dynamo,
            **mode,
        )
        names = label_names_of(model, label_names)
        if names is not None:
            write_metadata(staged, {LABELS_KEY: json.dumps(dict(enumerate(names)))})
    check_parity(path, model, [named if keyword else args[0]], atol=config.parity_atol)
    return path


def _dynamic_shapes(named: dict[str, Tensor], config: OnnxExportConfig) -> tuple[tuple[dict[int, Any], ...]]:
    batch, sequence = torch.export.Dim("batch"), torch.export.Dim("sequence")
    axes = _dynamic_axes(named, config)
    # One entry for the wrapper's single ``*inputs`` argument, holding one spec per input tensor.
    return (
        tuple(
            {axis: (batch if label == "batch" else sequence) for axis, label in axes.get(name, {}).items()}
            for name in named
        ),
    )
