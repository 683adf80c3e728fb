"""Label names and other metadata stored in an ONNX graph's ``metadata_props``."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from torch import nn

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import atomic_path

LABELS_KEY = "id2label"


def label_names_of(model: nn.Module, label_names: Sequence[str] | None) -> list[str] | None:
    """``label_names`` as given, else a Hugging Face model's ``config.id2label`` by id, else None."""
    if label_names is not None:
        return list(label_names)
    id2label = getattr(getattr(model, "config", None), "id2label", None)
    if id2label:
        return [str(id2label[i]) for i in sorted(id2label)]
    return None


def write_metadata(path: str | Path, values: Mapping[str, str]) -> None:
    """Set ``metadata_props`` entries of the ONNX model at ``path`` (replacing entries with the same key).

    The file is replaced atomically; weights stored as external data stay where they are (the graph references them
    by a path relative to its folder, which the temporary beside it shares).
    """
    onnx = require("onnx", "write_metadata")
    model = onnx.load(str(path), load_external_data=False)
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in values.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_path(path) as temporary:
        onnx.save(model, str(temporary))


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of the ONNX model at ``path``."""
    onnx = require("onnx", "read_metadata")
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def read_label_names(path: str | Path) -> dict[int, str] | None:
    """The ``id2label`` mapping stored by :func:`export_onnx`, or ``None`` when the model has none."""
    raw = read_metadata(path).get(LABELS_KEY)
    return None if raw is None else {int(k): v for k, v in json.loads(raw).items()}
