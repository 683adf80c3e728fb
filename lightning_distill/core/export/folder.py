"""A text classifier as a folder laid out as Hugging Face ``optimum`` writes one: ONNX graphs, config and tokenizer.

``optimum``'s ``ORTModelForSequenceClassification.from_pretrained(folder)`` loads ``model.onnx`` (or the graph named
by ``file_name``) with ``config.json``; ``transformers.pipeline("text-classification", ...)`` then names the labels
from its ``id2label``. :func:`lightning_distill.core.export.load_exported` loads the same folder without optimum.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from torch import nn

from lightning_distill.core.atomic import replace_folder
from lightning_distill.core.export.config import OnnxExportConfig, OrtQuantConfig
from lightning_distill.core.export.first_token import cut_for_export
from lightning_distill.core.export.integrity import check_export_target, export_record
from lightning_distill.core.export.layout import GRAPH_FILES, GraphKind
from lightning_distill.core.export.metadata import label_names_of
from lightning_distill.core.export.model_card import write_model_card

__all__ = ["GRAPH_FILES", "GraphKind", "export_text_classifier", "hf_config_of"]


def hf_config_of(model: nn.Module) -> Any:
    """The Hugging Face config of ``model`` (a ``PreTrainedModel``, or a wrapper such as ``TransformerClassifier``).

    Raises:
        ValueError: the model has no ``config`` with ``to_json_string`` (it is no Hugging Face model).
    """
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "to_json_string"):
        raise ValueError(
            f"{type(model).__name__} has no Hugging Face config (model.config), so no config.json can be written; "
            "export a Hugging Face sequence classifier (e.g. lightning_distill.core.models.TransformerClassifier), "
            "or use export_onnx for a bare ONNX file"
        )
    return config


def _architecture(model: nn.Module) -> str | None:
    return next(
        (type(m).__name__ for m in model.modules() if type(m).__name__.endswith("ForSequenceClassification")), None
    )


def _folder_config(model: nn.Module, id2label: Mapping[int, str] | None) -> Any:
    config = copy.deepcopy(hf_config_of(model))
    names = label_names_of(model, None if id2label is None else [id2label[i] for i in sorted(id2label)])
    if names is None:
        raise ValueError(f"{type(model).__name__} names no labels: pass id2label")
    if len(names) != config.num_labels:
        raise ValueError(f"id2label names {len(names)} labels but the model predicts {config.num_labels}")
    config.id2label = dict(enumerate(names))
    config.label2id = {name: i for i, name in enumerate(names)}
    if all(name == f"LABEL_{i}" for i, name in enumerate(names)):
        warnings.warn(
            "the exported config.json names the labels LABEL_0..LABEL_n only: pass id2label (the data module's) to "
            "give predictions their names",
            stacklevel=3,
        )
    config.architectures = [_architecture(model)] if _architecture(model) else config.architectures
    return config


def _example_inputs(model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int | None) -> dict[str, Any]:
    """The tokenizer's output for ``texts``, cut to the inputs ``model.forward`` takes (DistilBERT: no token types)."""
    if isinstance(texts, str) or not texts:
        raise ValueError(f"example_texts must be a non-empty list of strings; got {texts!r}")
    encoded = tokenizer(list(texts), padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    accepted = inspect.signature(model.forward).parameters
    return {key: encoded[key] for key in tokenizer.model_input_names if key in encoded and key in accepted}


def _check_graphs(graphs: Sequence[str], quantization: OrtQuantConfig) -> OrtQuantConfig:
    unknown = [g for g in graphs if g not in GRAPH_FILES]
    if unknown or not graphs:
        raise ValueError(f"graphs {list(graphs)} must be a non-empty list of {list(GRAPH_FILES)}")
    if quantization.mode != "dynamic" or quantization.embedding_bits is not None:
        raise ValueError(
            "export_text_classifier quantizes dynamically (no calibration data) and writes the 4-bit-embedding graph "
            f"itself: pass an OrtQuantConfig with mode='dynamic' and embedding_bits=None; got {quantization}"
        )
    return quantization


def _save_tokenizer(tokenizer: Any, folder: Path, max_length: int | None) -> None:
    """``tokenizer``'s files in ``folder``, with ``model_max_length`` set to ``max_length`` (the tokenizer given is
    left as it is)."""
    if max_length is not None:
        tokenizer = copy.deepcopy(tokenizer)
        tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(folder))


def _write_graphs(
    model: nn.Module,
    example: dict[str, Any],
    folder: Path,
    graphs: Sequence[str],
    quantization: OrtQuantConfig,
    export_config: OnnxExportConfig,
) -> dict[str, Path]:
    """The ONNX graphs of ``graphs`` in ``folder``; both int8 graphs are quantized from ``model.onnx``."""
    from lightning_distill.core.export.onnx import export_onnx
    from lightning_distill.core.export.ort_quantization import quantize_onnx
    from lightning_distill.core.export.runtime import optimize_onnx

    written = {"fp32": export_onnx(model, export_config, example, folder / GRAPH_FILES["fp32"])}
    if "optimized" in graphs:
        written["optimized"] = optimize_onnx(written["fp32"], folder / GRAPH_FILES["optimized"])
    if "int8" in graphs:
        written["int8"] = quantize_onnx(written["fp32"], folder / GRAPH_FILES["int8"], quantization)
    if "int8_emb4" in graphs:
        emb4 = replace(quantization, embedding_bits=4)
        written["int8_emb4"] = quantize_onnx(written["fp32"], folder / GRAPH_FILES["int8_emb4"], emb4)
    if "fp32" not in graphs:
        written.pop("fp32").unlink()
    return written


def export_text_classifier(
    model: nn.Module,
    tokenizer: Any,
    folder: str | Path,
    example_texts: Sequence[str],
    *,
    graphs: Sequence[GraphKind] = ("fp32", "optimized", "int8", "int8_emb4"),
    id2label: Mapping[int, str] | None = None,
    max_length: int | None = None,
    quantization: OrtQuantConfig | None = None,
    export_config: OnnxExportConfig | None = None,
    title: str | None = None,
    provenance: Mapping[str, str] | None = None,
    first_token_only: bool = True,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write ``model`` and ``tokenizer`` to ``folder`` as ``optimum`` lays out an exported text classifier.

    The folder holds the ONNX graphs of ``graphs`` (file names in :data:`GRAPH_FILES`), ``config.json`` (the model's
    Hugging Face config with the real ``id2label``/``label2id``), the tokenizer's files (``save_pretrained``, with
    ``model_max_length`` set to ``max_length`` so every client truncates alike) and a model card ``README.md`` (sizes;
    :func:`~lightning_distill.core.export.model_card.write_model_card` adds measured accuracy and latency). Both int8
    graphs are quantized from ``model.onnx`` (ONNX Runtime's quantizer cannot type the fused optimized graph), so
    ``fp32`` is always written.

    The folder is written whole beside ``folder`` and swapped in by rename, so it never mixes two exports (a
    re-export with fewer graphs leaves none of the previous ones). ``folder`` may be new, empty, or hold a previous
    export of this package; any other folder is refused unless ``overwrite``. ``export_info.json`` records an export
    id and the sha256 of each file, which :func:`~lightning_distill.core.export.load_exported` checks.

    Args:
        model: A Hugging Face sequence classifier or a wrapper with its ``config`` (``TransformerClassifier``).
        tokenizer: Its tokenizer.
        folder: Output folder: new, empty, or a previous export of this package; replaced as a whole.
        example_texts: A few raw texts to trace the export with and to check the fp32 graph against PyTorch.
        graphs: Which graphs to write.
        id2label: Label names by class id; None takes the model config's.
        max_length: Longest token sequence (the data module's ``max_length``); None keeps the tokenizer's.
        quantization: Settings of the ``int8`` graph (e.g. ``OrtQuantConfig.for_hardware("avx512_vnni")``); the
            ``int8_emb4`` graph uses them too, with 4-bit embeddings. None: dynamic, per-tensor int8.
        export_config: ONNX export settings.
        title: First line of the model card; None names the architecture.
        provenance: How the model was made (e.g. ``{"checkpoint": ..., "config": ...}``), listed in the card.
        first_token_only: Compute the last encoder layer for the first token only, the one the head reads
            (:mod:`~lightning_distill.core.export.first_token`): the same logits, less work. Where the model does not
            allow it (no BERT-style layers, or a head that reads other tokens: logits on ``example_texts`` differ),
            every layer is exported whole, with a warning that says why, as with False; the card records which.
        overwrite: Replace ``folder`` even where it is not empty and holds no export of this package (everything
            in it is deleted).

    Returns:
        The path of each written graph, by kind.

    Raises:
        ValueError: an unknown graph kind, no Hugging Face config, label names that do not fit the model, or an
            empty ``example_texts`` (all before anything is written).
        FileExistsError: ``folder`` is a file, or a non-empty folder that holds no export of this package and
            ``overwrite`` is False (before anything is written).
    """
    quantization = _check_graphs(graphs, quantization or OrtQuantConfig())
    config = _folder_config(model, id2label)
    example = _example_inputs(model, tokenizer, example_texts, max_length)
    folder = Path(folder)
    check_export_target(folder, overwrite)
    model, last_layer = cut_for_export(model, example, first_token_only)
    architecture = config.architectures[0] if config.architectures else config.model_type
    with replace_folder(folder.resolve() if folder.is_symlink() else folder) as temporary:
        written = _write_graphs(model, example, temporary, graphs, quantization, export_config or OnnxExportConfig())
        config.save_pretrained(str(temporary))
        _save_tokenizer(tokenizer, temporary, max_length)
        card = {
            "title": title or f"{architecture} text classifier",
            "provenance": dict(provenance or {}),
            "quantization": asdict(quantization),
            "max_length": max_length,
            "last_layer": last_layer,
            **export_record(temporary),
        }
        write_model_card(temporary, card)
    return {kind: folder / written[kind].name for kind in graphs}
