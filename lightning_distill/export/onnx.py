"""Export a PyTorch classifier to ONNX, keep its label names, and check the graph against PyTorch on real batches."""

from __future__ import annotations

import copy
import inspect
import json
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from lightning_distill.export.config import OnnxExportConfig, OrtSessionConfig
from lightning_distill.modules._batch import student_inputs

LABELS_KEY = "id2label"


class OnnxParityError(AssertionError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance; the message names the difference and input."""


@dataclass(frozen=True)
class ParityReport:
    """Result of :func:`check_parity`: the largest absolute logit difference over all checked examples."""

    max_abs_diff: float
    atol: float
    num_batches: int
    num_examples: int


class _Logits(nn.Module):
    """Calls the model with named inputs in a fixed order and returns its logits tensor (not a model output object)."""

    def __init__(self, model: nn.Module, names: Sequence[str], keyword: bool) -> None:
        super().__init__()
        self.model = model
        self.names = list(names)
        self.keyword = keyword

    def forward(self, *inputs: Tensor) -> Tensor:
        output = self.model(**dict(zip(self.names, inputs, strict=True))) if self.keyword else self.model(*inputs)
        return output.logits if hasattr(output, "logits") else output


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


def _label_names(model: nn.Module, label_names: Sequence[str] | None) -> list[str] | None:
    if label_names is not None:
        return list(label_names)
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if id2label:
        return [str(id2label[i]) for i in sorted(id2label)]
    return None


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
    named, keyword = _as_named(example_inputs, config)
    _check_signature(model, named, keyword)
    model = copy.deepcopy(model).float().eval()
    wrapper = _Logits(model, list(named), keyword).eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(named.values())
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation warnings about the TorchScript exporter
        # The two exporters share their arguments but for how dynamic dimensions are declared.
        if config.dynamo:
            mode = {"external_data": False, "dynamic_shapes": _dynamic_shapes(named, config), "verbose": False}
        else:
            mode = {"dynamic_axes": _dynamic_axes(named, config), "do_constant_folding": True}
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=list(named),
            output_names=list(config.output_names),
            opset_version=config.opset,
            dynamo=config.dynamo,
            **mode,
        )
    names = _label_names(model, label_names)
    if names is not None:
        write_metadata(path, {LABELS_KEY: json.dumps(dict(enumerate(names)))})
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


def write_metadata(path: str | Path, values: Mapping[str, str]) -> None:
    """Set ``metadata_props`` entries of the ONNX model at ``path`` (replacing entries with the same key)."""
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model at ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def read_label_names(path: str | Path) -> dict[int, str] | None:
    """The ``id2label`` mapping stored by :func:`export_onnx`, or ``None`` when the model has none."""
    raw = read_metadata(path).get(LABELS_KEY)
    return None if raw is None else {int(k): v for k, v in json.loads(raw).items()}


def _numpy_inputs(batch: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    if isinstance(batch, Mapping):
        return {n: _to_numpy(batch[n]) for n in names if n in batch}
    if isinstance(batch, (tuple, list)):
        return {n: _to_numpy(t) for n, t in zip(names, batch, strict=False)}
    return {names[0]: _to_numpy(batch)}


def _to_numpy(value: Any) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)


def _describe(batch: dict[str, np.ndarray]) -> str:
    with np.printoptions(threshold=20, edgeitems=3, precision=4):
        return "; ".join(f"{name} shape {tuple(a.shape)} {a.dtype} = {a}" for name, a in batch.items())


def check_parity(
    onnx_model: str | Path | Any,
    model: nn.Module,
    batches: Iterable[Any],
    atol: float = 1e-4,
    max_batches: int | None = None,
) -> ParityReport:
    """Compare ONNX Runtime logits with PyTorch logits on real batches.

    Args:
        onnx_model: Path of an ``.onnx`` file, or an ``onnxruntime.InferenceSession``.
        model: The PyTorch model it was exported from (run in eval mode, on a copy).
        batches: Model inputs: tensors, ``(inputs, labels)`` pairs, or dicts of tensors (``labels``/``index`` ignored).
        atol: Largest allowed absolute logit difference.
        max_batches: Stop after this many batches.

    Raises:
        OnnxParityError: the largest difference exceeds ``atol``; the message gives it and the worst input.
    """
    from lightning_distill.export.runtime import create_session

    session = create_session(onnx_model, OrtSessionConfig()) if isinstance(onnx_model, (str, Path)) else onnx_model
    names = [i.name for i in session.get_inputs()]
    model = copy.deepcopy(model).float().eval()
    worst, worst_feed, count, examples = -1.0, None, 0, 0
    for batch in batches:
        if max_batches is not None and count >= max_batches:
            break
        inputs = _model_inputs(batch)
        with torch.no_grad():
            output = model(**inputs) if isinstance(inputs, Mapping) else model(inputs)
        expected = (output.logits if hasattr(output, "logits") else output).float().numpy()
        feed = _numpy_inputs(inputs, names)
        actual = session.run(None, feed)[0]
        diff = float(np.abs(actual - expected).max()) if expected.size else 0.0
        if diff > worst:
            worst, worst_feed = diff, feed
        count += 1
        examples += int(expected.shape[0])
    if count == 0:
        raise ValueError("check_parity needs at least one batch")
    if worst > atol:
        raise OnnxParityError(
            f"ONNX Runtime and PyTorch logits differ by up to {worst:.3g} (> atol {atol:g}) on {count} batches; "
            f"worst input: {_describe(worst_feed)}"
        )
    return ParityReport(max_abs_diff=worst, atol=atol, num_batches=count, num_examples=examples)


def _model_inputs(batch: Any) -> Any:
    return batch if isinstance(batch, Tensor) else student_inputs(batch)
