"""Save and reload quantized PyTorch models: a state dict plus the config that rebuilds the quantized structure.

The file is one ``torch.save`` dict::

    {"format": "lightning-distill/quantized", "version": 1,
     "config": {"type": "StaticQuantConfig", "backend": "x86", ...},
     "graph": "fx" | "eager", "notes": [...], "untraceable": None | "<why FX could not trace the model>",
     "state_dict": <quantized model state_dict>}

Reloading takes a freshly built *float* model of the same architecture (e.g. ``TinyMNIST()``, or
``BertForSequenceClassification(config)``), rebuilds the quantized structure from the saved config (no calibration
needed: the saved scales and zero points are loaded), then loads the state dict strictly. For a model quantized
through FX graph mode (``"graph": "fx"``) the skeleton is rebuilt by tracing the float model and running the same
prepare and convert steps without data; the graph is never stored. ``engine="torchao"`` files are rebuilt the same
way: dynamic int8 by running ``quantize_`` on the float model (the state dict holds torchao int8 tensors, which
``torch.load(weights_only=True)`` reads once torchao is imported: torchao registers them as safe), PT2E graphs
(``"graph": "pt2e"``) by exporting the float model again on zeros of the saved ``"example_inputs"`` shapes,
preparing and converting it, then writing back the saved ``"activation_qparams"`` (``convert_pt2e`` bakes activation
scales into the graph as numbers, so they are not in the state dict). This avoids pickling code
(TorchScript is deprecated and pickled modules break when the code moves) and gives identical predictions.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from torch import nn

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import write_torch
from lightning_distill.core.quantization import _bnb, _eager, _fx, _torchao
from lightning_distill.core.quantization.config import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    QuantConfig,
    StaticQuantConfig,
    config_from_dict,
    config_to_dict,
)
from lightning_distill.core.quantization.quantize import CONFIG_ATTRIBUTE, INPUT_SPEC_ATTRIBUTE
from lightning_distill.core.quantization.report import REPORT_ATTRIBUTE, build_report
from lightning_distill.core.safe_load import UnsafeFileError, load_file

FORMAT = "lightning-distill/quantized"
VERSION = 1


def save_quantized(model: nn.Module, path: str | Path) -> Path:
    """Write a model returned by :func:`quantize` to ``path`` (see the module docstring for the format).

    The file is replaced atomically: a write that fails (a full disk) keeps the previous one.

    Raises:
        ValueError: ``model`` was not produced by :func:`quantize`, or is a QAT model that was prepared but not
            converted (save its float checkpoint instead, or convert it first).
    """
    config = getattr(model, CONFIG_ATTRIBUTE, None)
    if config is None:
        raise ValueError("save_quantized needs a model returned by quantize(model, config); this one has no config")
    if isinstance(config, QATConfig) and config.step == "prepare":
        raise ValueError(
            "this QAT model is prepared, not converted: convert it with quantize(model, QATConfig(step='convert')) "
            "before saving (its float weights live in the training checkpoint)"
        )
    path = Path(path)
    report = getattr(model, REPORT_ATTRIBUTE, None)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "config": config_to_dict(config),
        "graph": _graph_kind(model, config),
        "notes": list(report.notes) if report is not None else [],
        "untraceable": report.untraceable if report is not None else None,
        "state_dict": model.state_dict(),
    }
    if payload["graph"] == "pt2e":
        payload["example_inputs"] = getattr(model, INPUT_SPEC_ATTRIBUTE)
        payload["activation_qparams"] = _torchao.activation_qparams(model)
    return write_torch(path, payload)


def _graph_kind(model: nn.Module, config: QuantConfig) -> str:
    if getattr(config, "engine", "eager") == "torchao":
        return "pt2e" if _fx.is_graph_module(model) else "eager"
    return "fx" if _fx.is_graph_module(model) else "eager"


def read_config(path: str | Path) -> QuantConfig:
    """The quantization config stored in a file written by :func:`save_quantized`."""
    return config_from_dict(_read(path)["config"])


def load_quantized(path: str | Path, model: nn.Module) -> nn.Module:
    """Rebuild the quantized model saved at ``path`` from ``model``, a float model of the same architecture.

    ``model`` is not changed; its weights do not matter (they are replaced by the saved ones). The global quantized
    engine is set to the saved backend. Like :func:`quantize`, the result carries a per-layer ``quantization_report``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is not in this format, or its weights do not fit ``model``.
    """
    payload = _read(path)
    config = config_from_dict(payload["config"])
    state = payload["state_dict"]
    graph = payload.get("graph", "eager")  # files written before FX graph mode have no "graph" entry
    try:
        skeleton = _skeleton(copy.deepcopy(model).eval(), config, state, graph, payload)
        if isinstance(config, BitsAndBytesConfig):
            _bnb.load_state_dict(skeleton, state)
        else:
            skeleton.load_state_dict(state, strict=True)
        if graph == "pt2e":
            _torchao.set_activation_qparams(skeleton, payload["activation_qparams"])
    except (RuntimeError, ValueError, KeyError) as error:  # dynamic int8 layers raise KeyError for missing entries
        raise ValueError(
            f"quantized model {str(path)!r} does not fit the given {type(model).__name__}: {error}. Pass a float "
            "model built with the same architecture as the one that was quantized"
        ) from error
    setattr(skeleton, CONFIG_ATTRIBUTE, config)
    notes, untraceable = payload.get("notes", ()), payload.get("untraceable")
    setattr(skeleton, REPORT_ATTRIBUTE, build_report(model, skeleton, config, notes, untraceable))
    skeleton.eval()  # not `return skeleton.eval()`: an exported graph's eval() returns None
    return skeleton


def _read(path: str | Path) -> dict[str, Any]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"no quantized model at {str(path)!r}")
    try:
        payload = load_file(path, "quantized model")
    except UnsafeFileError as error:
        if not error.refused or not all(name.startswith("torchao.") for name in error.refused):
            raise
        # torchao int8 weights: importing torchao registers their classes as safe for weights_only loading. Only
        # torchao's own classes are let through this way; a file that also asks for anything else stays refused.
        require("torchao", f"loading the torchao-quantized model {str(path)!r}")
        payload = load_file(path, "quantized model")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{str(path)!r} is not a {FORMAT} file written by save_quantized")
    if payload.get("version") != VERSION:
        raise ValueError(f"{str(path)!r} has format version {payload.get('version')}; this code reads {VERSION}")
    return payload


def _skeleton(
    model: nn.Module, config: QuantConfig, state: dict[str, Any], graph: str, payload: dict[str, Any]
) -> nn.Module:
    """The quantized structure for ``config`` without calibration; the saved state fills in every number."""
    if graph == "pt2e" and isinstance(config, (StaticQuantConfig, QATConfig)):
        converted = _torchao.skeleton(model, config, payload["example_inputs"])
        setattr(converted, INPUT_SPEC_ATTRIBUTE, payload["example_inputs"])
        return converted
    if getattr(config, "engine", "eager") == "torchao" and isinstance(config, DynamicQuantConfig):
        return _torchao.dynamic(model, config)
    if graph == "fx" and isinstance(config, (StaticQuantConfig, QATConfig)):
        try:
            return _fx.skeleton(model, config)
        except _fx.NotTraceableError as error:
            raise ValueError(
                f"the quantized model was saved from an FX graph, but the given {type(model).__name__} does not "
                f"trace ({error.reason}); pass a float model built with the same architecture"
            ) from error
    if isinstance(config, DynamicQuantConfig):
        return _eager.dynamic(model, config)
    if isinstance(config, StaticQuantConfig):
        end_to_end = "quant_stub.scale" in state
        return _eager.convert(_eager.prepare_static(model, config, end_to_end=end_to_end))
    if isinstance(config, QATConfig):
        prepared = _eager.prepare_qat(model, config)
        return _eager.convert(prepared)
    if isinstance(config, BitsAndBytesConfig):
        _bnb.replace_linears(model, config, device="cpu")  # the saved state is on CPU; move the result afterwards
        return model
    raise TypeError(f"cannot rebuild a model for {type(config).__name__}")  # pragma: no cover
