"""ONNX Runtime: sessions with explicit providers and threads, offline graph optimization, predict functions."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import staged_file
from lightning_distill.core.export.config import OrtSessionConfig
from lightning_distill.core.export.metadata import read_metadata, write_metadata

_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def _session_options(config: OrtSessionConfig) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = config.intra_op_num_threads
    options.inter_op_num_threads = config.inter_op_num_threads
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, _LEVELS[config.optimization_level])
    options.execution_mode = (
        ort.ExecutionMode.ORT_PARALLEL if config.execution_mode == "parallel" else ort.ExecutionMode.ORT_SEQUENTIAL
    )
    options.log_severity_level = 3  # errors only: ORT warns about every unused initializer otherwise
    return options


def create_session(path: str | Path, config: OrtSessionConfig | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` with the providers, threads and optimization of ``config`` (CPU default)."""
    ort = require("onnxruntime", "create_session")

    if not Path(path).is_file():
        raise FileNotFoundError(f"no ONNX model at {str(path)!r}")
    config = config or OrtSessionConfig()
    return ort.InferenceSession(str(path), sess_options=_session_options(config), providers=list(config.providers))


def optimize_onnx(
    path: str | Path, output_path: str | Path, level: str = "extended", config: OrtSessionConfig | None = None
) -> Path:
    """Write the graph as optimized by ONNX Runtime (constant folding, node fusions such as attention and LayerNorm).

    ``extended`` is the highest level whose saved graph runs on any CPU (ONNX Runtime documents ``all`` as adding
    hardware-specific layout changes, applied anyway when a session loads a model with ``optimization_level='all'``).
    The graph is optimized for the CPU provider whatever ``config.providers`` says, so the saved file runs anywhere;
    a GPU session applies its own fusions when it loads it.
    """
    ort = require("onnxruntime", "optimize_onnx")

    session_config = config or OrtSessionConfig()
    options = _session_options(
        OrtSessionConfig(
            intra_op_num_threads=session_config.intra_op_num_threads,
            inter_op_num_threads=session_config.inter_op_num_threads,
            optimization_level=level,  # type: ignore[arg-type]
        )
    )
    output_path = Path(output_path)
    with staged_file(output_path) as staged:  # the previous graph or none on failure, never a partial one
        options.optimized_model_filepath = str(staged)
        ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        _copy_metadata(path, staged)
    return output_path


def _copy_metadata(source: str | Path, target: str | Path) -> None:
    values = read_metadata(source)
    if values and read_metadata(target) != values:
        write_metadata(target, values)


def onnx_predictor(session: Any, encode: Callable[[Any], Any] | None = None) -> Callable[[Any], np.ndarray]:
    """A predict function for :func:`lightning_distill.core.benchmark.benchmark`: raw inputs -> logits (numpy).

    Args:
        session: An ``onnxruntime.InferenceSession`` (see :func:`create_session`).
        encode: Raw inputs -> model inputs: a tensor or array (single-input graphs) or a dict by input name, e.g. a
            tokenizer call; the data module's ``encode``. Entries the graph does not take (``token_type_ids`` of a
            graph exported without them) are dropped.
    """
    inputs = session.get_inputs()
    names = [i.name for i in inputs]
    dtypes = {i.name: _numpy_dtype(i.type) for i in inputs}

    def predict(raw: Any) -> np.ndarray:
        model_inputs = encode(raw) if encode is not None else raw
        if isinstance(model_inputs, Mapping):
            missing = [n for n in names if n not in model_inputs]
            if missing:
                raise KeyError(f"the ONNX graph needs inputs {missing} that encode() did not produce")
            feed = {n: _array(model_inputs[n], dtypes[n]) for n in names}
        else:
            feed = {names[0]: _array(model_inputs, dtypes[names[0]])}
        return session.run(None, feed)[0]

    return predict


def _numpy_dtype(onnx_type: str) -> Any:
    return {"tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(float)": np.float32}.get(onnx_type)


def _array(value: Any, dtype: Any) -> np.ndarray:
    array = value.detach().cpu().numpy() if isinstance(value, Tensor) else np.asarray(value)
    return array.astype(dtype, copy=False) if dtype is not None else array


def numpy_feed(batch: Any, names: Sequence[str]) -> dict[str, np.ndarray]:
    """ONNX Runtime's feed for a batch of model inputs: arrays by input name (a dict's extra entries dropped)."""
    if isinstance(batch, Mapping):
        return {n: _array(batch[n], None) for n in names if n in batch}
    if isinstance(batch, (tuple, list)):
        return {n: _array(t, None) for n, t in zip(names, batch, strict=False)}
    return {names[0]: _array(batch, None)}
