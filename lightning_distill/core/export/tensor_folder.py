"""An image or tensor classifier as an export folder: ONNX graphs, ``config.json``, the preprocessing and a model card.

The folder is laid out as :func:`~lightning_distill.core.export.export_text_classifier` lays out a text classifier's,
with the input's shape and dtype in ``config.json`` instead of a tokenizer, and the data's normalization in
``preprocessor_config.json`` (Hugging Face image-processor keys) where there is one.
:func:`~lightning_distill.core.export.load_exported` loads it back as an
:class:`~lightning_distill.core.export.ExportedTensorClassifier`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lightning_distill.core.atomic import replace_folder, write_json
from lightning_distill.core.batch import output_logits
from lightning_distill.core.export.config import OnnxExportConfig, OrtQuantConfig
from lightning_distill.core.export.integrity import check_export_target, export_record
from lightning_distill.core.export.layout import GRAPH_FILES, GraphKind
from lightning_distill.core.export.model_card import write_model_card

__all__ = ["TENSOR_MODEL_TYPE", "export_tensor_classifier"]

TENSOR_MODEL_TYPE = "lightning-distill-tensor-classifier"
PREPROCESSOR_CONFIG = "preprocessor_config.json"
_TENSOR_GRAPHS = ("fp32", "optimized", "int8")
# Channels of each PIL mode a preprocessor may name.
IMAGE_MODES = {"L": 1, "RGB": 3}
PREPROCESSING_KEYS = {
    "image_mode",
    "size",
    "do_resize",
    "do_rescale",
    "rescale_factor",
    "do_normalize",
    "image_mean",
    "image_std",
}


def _check_arguments(
    example_inputs: Any, graphs: Sequence[str], quantization: OrtQuantConfig
) -> tuple[Tensor, OrtQuantConfig]:
    if not isinstance(example_inputs, Tensor) or example_inputs.dim() < 2 or len(example_inputs) == 0:
        raise ValueError(
            "example_inputs must be a non-empty batch tensor (batch axis first), e.g. datamodule.example_input(8); "
            f"got {type(example_inputs).__name__} {tuple(getattr(example_inputs, 'shape', ()))}"
        )
    unknown = [g for g in graphs if g not in _TENSOR_GRAPHS]
    if unknown or not graphs:
        raise ValueError(f"graphs {list(graphs)} must be a non-empty list of {list(_TENSOR_GRAPHS)} for a tensor model")
    if quantization.embedding_bits is not None:
        raise ValueError(
            f"an image or tensor classifier has no embedding tables: pass an OrtQuantConfig with embedding_bits=None; "
            f"got {quantization}"
        )
    return example_inputs, quantization


def _check_calibration(example: Tensor, calibration_inputs: Any) -> Tensor:
    calibration = example if calibration_inputs is None else calibration_inputs
    if not isinstance(calibration, Tensor) or len(calibration) == 0 or calibration.shape[1:] != example.shape[1:]:
        raise ValueError(
            f"calibration_inputs must be a non-empty batch of inputs of shape {list(example.shape[1:])}, as "
            f"example_inputs; got {type(calibration).__name__} {list(getattr(calibration, 'shape', ()))}"
        )
    return calibration


def _labels(num_labels: int, id2label: Mapping[int, str] | None) -> list[str]:
    if id2label is None:
        warnings.warn(
            "the exported config.json names the labels LABEL_0..LABEL_n only: pass id2label (the data module's) to "
            "give predictions their names",
            stacklevel=5,
        )
        return [f"LABEL_{i}" for i in range(num_labels)]
    names = [str(id2label[i]) for i in sorted(id2label)]
    if sorted(id2label) != list(range(len(names))) or len(names) != num_labels:
        raise ValueError(
            f"id2label names the ids {sorted(id2label)} but the model predicts {num_labels} classes: pass one name "
            f"for each id 0..{num_labels - 1}"
        )
    return names


def _folder_config(
    model: nn.Module, example: Tensor, id2label: Mapping[int, str] | None, export_config: OnnxExportConfig
) -> dict[str, Any]:
    """``config.json``: the labels (as many as the model's logits on one example) and the input's name and shape."""
    with torch.no_grad():
        was_training = model.training
        num_labels = int(output_logits(model.eval()(example[:1])).shape[-1])
        model.train(was_training)
    names = _labels(num_labels, id2label)
    return {
        "architectures": [type(model).__name__],
        "model_type": TENSOR_MODEL_TYPE,
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
        "num_labels": num_labels,
        "input_name": (export_config.input_names or ("input",))[0],
        "input_shape": list(example.shape[1:]),
        "input_dtype": str(example.dtype).removeprefix("torch."),
    }


def _input_layouts(mode: str, height: int, width: int) -> list[list[int]]:
    """The model input shapes an image of ``mode`` and ``height`` x ``width`` is reshaped into: channels first, the
    channel axis dropped (``L`` only), or flattened channels first."""
    channels = IMAGE_MODES[mode]
    layouts = [[channels, height, width], *([[height, width]] if channels == 1 else []), [channels * height * width]]
    return [list(layout) for layout in dict.fromkeys(tuple(layout) for layout in layouts)]


def _check_normalization(preprocessing: Mapping[str, Any], mode: str) -> bool:
    """Whether ``preprocessing`` normalizes (``do_normalize``, by default where a mean or std is given); where it
    does, both ``image_mean`` and ``image_std`` must be there, one value per channel, the std's positive."""
    given = [key for key in ("image_mean", "image_std") if preprocessing.get(key) is not None]
    normalize = bool(preprocessing.get("do_normalize", bool(given)))
    if normalize and len(given) < 2:
        missing = sorted({"image_mean", "image_std"} - set(given))
        raise ValueError(
            f"preprocessing normalizes images (do_normalize is {preprocessing.get('do_normalize', 'implied')}) but "
            f"has no {' and no '.join(missing)}: give both image_mean and image_std (one value per channel of "
            f"{mode}, as the data module normalizes), or set do_normalize to false"
        )
    for key in given:
        value = preprocessing[key]
        if not isinstance(value, Sequence) or len(value) != IMAGE_MODES[mode]:
            raise ValueError(f"preprocessing {key} {value} needs one value per channel of {mode}")
    if normalize and not all(float(v) > 0 for v in preprocessing["image_std"]):
        raise ValueError(f"preprocessing image_std {preprocessing['image_std']} must be positive (it divides)")
    return normalize


def check_preprocessing(preprocessing: Mapping[str, Any], input_shape: Sequence[int]) -> dict[str, Any]:
    """``preprocessing`` as written to ``preprocessor_config.json``, checked against the model's input shape.

    An image becomes a model input channels first: the input shape must be ``[C, H, W]``, ``[H, W]`` (mode ``L``)
    or ``[C * H * W]`` (flattened channels first); a channels-last model would get scrambled pixels.

    Raises:
        ValueError: an unknown key or image mode, no ``size``, normalization without ``image_mean`` or ``image_std``,
            or an input shape that is none of those layouts (the message names both shapes).
    """
    unknown = sorted(set(preprocessing) - PREPROCESSING_KEYS)
    if unknown:
        raise ValueError(f"preprocessing has unknown keys {unknown}; known are {sorted(PREPROCESSING_KEYS)}")
    mode = preprocessing.get("image_mode", "RGB")
    if mode not in IMAGE_MODES:
        raise ValueError(f"preprocessing image_mode must be one of {list(IMAGE_MODES)}; got {mode!r}")
    size = preprocessing.get("size")
    if not isinstance(size, Mapping) or not all(isinstance(size.get(k), int) for k in ("height", "width")):
        raise ValueError(f"preprocessing needs size {{'height': int, 'width': int}}; got {size!r}")
    layouts = _input_layouts(mode, size["height"], size["width"])
    if list(input_shape) not in layouts:
        raise ValueError(
            f"preprocessing makes {mode} images of {size['height']}x{size['width']} "
            f"({int(torch.Size(layouts[0]).numel())} values), laid out channels first as one of "
            f"{' or '.join(str(layout) for layout in layouts)}, but the model takes inputs of shape "
            f"{list(input_shape)}: fix size or image_mode, or export a model that takes channels-first inputs "
            "(a channels-last model would get scrambled pixels)"
        )
    normalize = _check_normalization(preprocessing, mode)
    return {
        "image_processor_type": "lightning-distill",
        "do_resize": True,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "image_mode": mode,
        **{k: (dict(v) if isinstance(v, Mapping) else v) for k, v in preprocessing.items()},
        "do_normalize": normalize,
    }


def _write_graphs(
    model: nn.Module,
    example: Tensor,
    folder: Path,
    graphs: Sequence[str],
    quantization: OrtQuantConfig,
    export_config: OnnxExportConfig,
    calibration: Tensor,
) -> dict[str, Path]:
    """The graphs of ``graphs`` in ``folder``; the int8 one is quantized from ``model.onnx`` (static: calibrated on
    ``calibration``)."""
    from lightning_distill.core.export.onnx import export_onnx
    from lightning_distill.core.export.ort_quantization import quantize_onnx
    from lightning_distill.core.export.runtime import optimize_onnx

    written = {"fp32": export_onnx(model, export_config, example, folder / GRAPH_FILES["fp32"])}
    if "optimized" in graphs:
        written["optimized"] = optimize_onnx(written["fp32"], folder / GRAPH_FILES["optimized"])
    if "int8" in graphs:
        batches = [calibration] if quantization.mode == "static" else None
        written["int8"] = quantize_onnx(written["fp32"], folder / GRAPH_FILES["int8"], quantization, batches)
    if "fp32" not in graphs:
        written.pop("fp32").unlink()
    return written


def export_tensor_classifier(
    model: nn.Module,
    folder: str | Path,
    example_inputs: Tensor,
    *,
    calibration_inputs: Tensor | None = None,
    id2label: Mapping[int, str] | None = None,
    preprocessing: Mapping[str, Any] | None = None,
    graphs: Sequence[GraphKind] = ("fp32", "int8"),
    quantization: OrtQuantConfig | None = None,
    export_config: OnnxExportConfig | None = None,
    title: str | None = None,
    provenance: Mapping[str, str] | None = None,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write an image or tensor classifier (one tensor in, logits out) to ``folder`` as an export folder.

    The folder holds the ONNX graphs of ``graphs`` (``model.onnx``, ``model_optimized.onnx``,
    ``model_quantized.onnx``), ``config.json`` (``architectures``, ``model_type``, ``id2label``/``label2id``,
    ``num_labels``, ``input_name``, ``input_shape``: one example's shape, the batch axis being dynamic,
    ``input_dtype``), ``preprocessor_config.json`` where ``preprocessing`` is given, a model card ``README.md`` and
    ``export_info.json``. The fp32 graph is checked against PyTorch on ``example_inputs``
    (``export_config.parity_atol``).

    The int8 graph is ONNX Runtime's static quantization (QDQ) by default, calibrated on ``calibration_inputs``:
    a session fuses static QDQ convolutions into ``QLinearConv``, while dynamic quantization makes ``ConvInteger``,
    run without fused int8 kernels. ``OrtQuantConfig(mode="dynamic")`` suits a model of ``Linear`` layers only.

    The folder is written, refused or replaced as by :func:`~lightning_distill.core.export.export_text_classifier`.

    Args:
        model: A classifier taking one float tensor (batch axis first) and returning logits.
        folder: Output folder: new, empty, or a previous export of this package; replaced as a whole.
        example_inputs: A batch of model inputs, as the data module yields them (normalized): the export's trace,
            the parity check's input and, without ``calibration_inputs``, the int8 calibration data (a few dozen).
        calibration_inputs: Inputs of another split than the measured one (validation) to calibrate int8 on.
        id2label: Label names by class id; None names them ``LABEL_0``.. (with a warning).
        preprocessing: How an image becomes a model input, in Hugging Face image-processor keys: ``image_mode``
            (``L`` or ``RGB``), ``size`` (``{"height": .., "width": ..}``), ``do_rescale``/``rescale_factor``,
            ``do_normalize``/``image_mean``/``image_std`` (normalization, on by default where a mean or std is
            given, needs both); written to ``preprocessor_config.json`` so the loaded folder takes PIL images. The
            model must take the image channels first: ``[C, H, W]``, ``[H, W]`` (``L``) or ``[C * H * W]``. None:
            the folder takes tensors only.
        graphs: Which graphs to write, of ``fp32``, ``optimized`` and ``int8``.
        quantization: Settings of the int8 graph; None: ``OrtQuantConfig(mode="static")``.
        export_config: ONNX export settings.
        title: First line of the model card; None names the architecture.
        provenance: How the model was made (e.g. ``{"checkpoint": ...}``), listed in the card.
        overwrite: Replace ``folder`` even where it is not empty and holds no export of this package.

    Returns:
        The path of each written graph, by kind.

    Raises:
        ValueError: an unknown graph kind, inputs that are no batch tensor, labels that do not fit the logits, or
            ``preprocessing`` that does not fit the input shape or lacks a mean or std (before anything is written).
        FileExistsError: ``folder`` is a file, or a non-empty folder that holds no export of this package and
            ``overwrite`` is False (before anything is written).
        OnnxParityError: the fp32 graph differs from PyTorch on ``example_inputs``.
    """
    example, quantization = _check_arguments(example_inputs, graphs, quantization or OrtQuantConfig(mode="static"))
    export_config = export_config or OnnxExportConfig()
    calibration = _check_calibration(example, calibration_inputs)
    config = _folder_config(model, example, id2label, export_config)
    processor = None if preprocessing is None else check_preprocessing(preprocessing, config["input_shape"])
    folder = Path(folder)
    check_export_target(folder, overwrite)
    with replace_folder(folder.resolve() if folder.is_symlink() else folder) as temporary:
        written = _write_graphs(model, example, temporary, graphs, quantization, export_config, calibration)
        write_json(temporary / "config.json", config)
        if processor is not None:
            write_json(temporary / PREPROCESSOR_CONFIG, processor)
        card = {
            "title": title or f"{type(model).__name__} classifier",
            "provenance": dict(provenance or {}),
            "quantization": asdict(quantization),
            **export_record(temporary),
        }
        write_model_card(temporary, card)
    return {kind: folder / written[kind].name for kind in graphs}
