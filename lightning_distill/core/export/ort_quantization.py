"""ONNX Runtime int8 quantization of an exported graph: dynamic, or static with calibration on real batches."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import staged_file
from lightning_distill.core.batch import model_inputs
from lightning_distill.core.export.config import OrtQuantConfig
from lightning_distill.core.export.metadata import read_metadata, write_metadata
from lightning_distill.core.export.runtime import numpy_feed


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantization tools log advice through the root logger; keep it to errors while they run."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def _quantize_embeddings(path: Path, output_path: Path, block_size: int) -> None:
    """Store every embedding table (a float initializer read by ``Gather``) of ``path`` in 4 bits, block-wise."""
    import onnx

    from lightning_distill.core.export.embedding_4bit import quantize_embedding_tables

    model = onnx.load(str(path))
    quantize_embedding_tables(model, block_size)
    onnx.save(model, str(output_path))  # output_path is staged by quantize_onnx


def _pre_process(path: Path, prepared: Path) -> None:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    leftover_existed = _SYMBOLIC_LEFTOVER.exists()
    try:
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=False)
    except Exception:
        # Symbolic shape inference gives up on some graphs (e.g. a dynamo-exported BERT); ONNX's own shape inference
        # still runs without it.
        try:
            _remove_symbolic_leftover(leftover_existed)
        except Exception as error:  # a cleanup problem must not hide the retry below
            logging.getLogger(__name__).warning("could not remove %s: %s", _SYMBOLIC_LEFTOVER, error)
        quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)


# When symbolic shape inference gives up, ONNX Runtime saves its partial model under this relative name, i.e. in the
# working directory, with its weights in external data files beside it.
_SYMBOLIC_LEFTOVER = Path("sym_shape_infer_temp.onnx")


def _remove_symbolic_leftover(existed_before: bool) -> None:
    """Delete the partial model (and the data files it references) that a failed symbolic inference left behind."""
    onnx = require("onnx", "quantize_onnx")
    if existed_before or not _SYMBOLIC_LEFTOVER.is_file():
        return
    model = onnx.load(str(_SYMBOLIC_LEFTOVER), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                Path(entry.value).unlink(missing_ok=True)
    _SYMBOLIC_LEFTOVER.unlink()


def quantize_onnx(
    path: str | Path,
    output_path: str | Path,
    config: OrtQuantConfig,
    calibration_data: Iterable[Any] | None = None,
) -> Path:
    """Write an int8 copy of the float ONNX model at ``path`` to ``output_path``, keeping its metadata (label names).

    The graph first goes through ONNX Runtime's quantization pre-processing (shape inference and graph cleanup), as
    its documentation recommends. ``dynamic`` stores int8 weights and quantizes activations at run time; ``static``
    calibrates activation ranges (min/max) on ``calibration_data`` and writes a QDQ graph.

    Args:
        path: The float ``.onnx`` file from :func:`export_onnx`.
        output_path: Where to write the int8 model.
        config: Mode, per-channel weights, number of calibration batches, operator types.
        calibration_data: Static mode only: batches of model inputs (tensors, ``(inputs, labels)`` pairs, or dicts of
            tensors), e.g. a data module's ``val_dataloader()``.

    Raises:
        ValueError: static mode without calibration data, or with an empty one.
    """
    require("onnxruntime", "quantize_onnx")
    if config.mode == "static" and calibration_data is None:
        raise ValueError(
            "OrtQuantConfig(mode='static') needs calibration_data, e.g. datamodule.val_dataloader(); or use "
            "mode='dynamic', which needs none"
        )
    if config.mode == "dynamic" and calibration_data is not None:
        raise ValueError("calibration_data is only used by OrtQuantConfig(mode='static')")
    output_path = Path(output_path)
    metadata = read_metadata(path)
    # The int8 graph is written in a folder beside output_path and moved there whole: an interrupted run or a full
    # disk leaves the previous graph or none, never a partial one.
    with tempfile.TemporaryDirectory() as folder, _quiet_root_logger(), staged_file(output_path) as staged:
        prepared = Path(folder) / "prepared.onnx"
        _pre_process(Path(path).resolve(), prepared)
        if config.mode == "dynamic":
            _quantize_dynamic(prepared, staged, config, Path(folder))
        else:
            _quantize_static(prepared, staged, config, calibration_data)
        if metadata:
            write_metadata(staged, metadata)
    return output_path


def _quantize_dynamic(prepared: Path, output_path: Path, config: OrtQuantConfig, folder: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    op_types = list(config.op_types) if config.op_types is not None else None
    int8, four_bit = output_path, []
    if config.embedding_bits is not None:
        # int8 for everything but the tables the 4-bit pass then stores (embedding_4bit.py); a table it keeps (a
        # width the blocks do not divide, tied weights) is int8 like the rest.
        four_bit = _name_gathers(prepared, config.embedding_block_size)
        int8 = folder / "int8.onnx"
    quantize_dynamic(
        str(prepared),
        str(int8),
        op_types_to_quantize=op_types,
        nodes_to_exclude=four_bit,
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        weight_type=getattr(QuantType, _QUANT_TYPES[config.weight_type]),
    )
    if config.embedding_bits is not None:
        _quantize_embeddings(int8, output_path, config.embedding_block_size)


def _name_gathers(prepared: Path, block_size: int) -> list[str]:
    """Name the unnamed ``Gather`` nodes of ``prepared`` (rewritten in place) and return those of 4-bit tables."""
    import onnx

    from lightning_distill.core.export.embedding_4bit import four_bit_gathers

    model = onnx.load(str(prepared))
    unnamed = [n for n in model.graph.node if n.op_type == "Gather" and not n.name]
    for i, node in enumerate(unnamed):
        node.name = f"Gather_emb4_{i}"
    if unnamed:
        onnx.save(model, str(prepared))
    return four_bit_gathers(model, block_size)


def _quantize_static(
    prepared: Path, output_path: Path, config: OrtQuantConfig, calibration_data: Iterable[Any] | None
) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    names = [i.name for i in ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()]
    feeds = [numpy_feed(model_inputs(b), names) for b in islice(calibration_data or (), config.calibration_batches)]
    if not feeds:
        raise ValueError("OrtQuantConfig(mode='static'): calibration_data yielded no batches")

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._feeds: Iterator[dict[str, Any]] = iter(feeds)

        def get_next(self) -> dict[str, Any] | None:
            return next(self._feeds, None)

    quantize_static(
        str(prepared),
        str(output_path),
        _Reader(),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=list(config.op_types) if config.op_types is not None else None,
        per_channel=config.per_channel,
        reduce_range=config.reduce_range,
        activation_type=getattr(QuantType, _QUANT_TYPES[config.activation_type]),
        weight_type=getattr(QuantType, _QUANT_TYPES[config.weight_type]),
    )


_QUANT_TYPES = {"int8": "QInt8", "uint8": "QUInt8"}
