"""Loading an export folder back: an ONNX Runtime session, the tokenizer and the label names; texts in, labels out."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_distill.core.export.config import OrtSessionConfig
from lightning_distill.core.export.exported_tensor import ExportedTensorClassifier, load_tensor_classifier
from lightning_distill.core.export.integrity import verify_export
from lightning_distill.core.export.runtime import create_session, onnx_predictor
from lightning_distill.core.text_encoding import TextEncoder

__all__ = ["ExportedClassifier", "load_exported"]


class ExportedClassifier:
    """A text classifier of an export folder: call it with texts, get label names.

    Args:
        session: The ``onnxruntime.InferenceSession`` of one graph of the folder.
        tokenizer: The folder's tokenizer; texts are padded to the longest and truncated to its ``model_max_length``.
        id2label: Label names by class id (``config.json``).
        graph: Path of the graph the session runs.
    """

    def __init__(self, session: Any, tokenizer: Any, id2label: dict[int, str], graph: Path) -> None:
        self.session, self.tokenizer, self.id2label, self.graph = session, tokenizer, id2label, graph
        self._encoder = TextEncoder(tokenizer, None, "np")
        self._predict = onnx_predictor(session, self.encode)

    def encode(self, texts: str | Sequence[str]) -> dict[str, np.ndarray]:
        """The graph's inputs for raw texts (tokenized, padded, truncated), as numpy arrays by input name."""
        if not self._encoder.fits(self.tokenizer, None):  # the tokenizer was changed or replaced
            self._encoder = TextEncoder(self.tokenizer, None, "np")
        return self._encoder(texts)

    def logits(self, texts: str | Sequence[str]) -> np.ndarray:
        """Logits of shape ``(len(texts), num_labels)`` (one row for a single string)."""
        return self._predict(texts)

    def predict_ids(self, texts: str | Sequence[str]) -> list[int]:
        """The most likely class id of each text."""
        return [int(i) for i in self.logits(texts).argmax(-1)]

    def __call__(self, texts: str | Sequence[str]) -> list[str]:
        """The most likely label name of each text (a one-element list for a single string)."""
        return [self.id2label[i] for i in self.predict_ids(texts)]


def load_exported(
    folder: str | Path, graph: str = "model_quantized.onnx", session_config: OrtSessionConfig | None = None
) -> ExportedClassifier | ExportedTensorClassifier:
    """Load an export folder written by :func:`~lightning_distill.core.export.export_text_classifier` (or optimum)
    or :func:`~lightning_distill.core.export.export_tensor_classifier`.

    A text classifier's folder gives an :class:`ExportedClassifier` (texts in); a folder whose ``config.json`` names
    an ``input_shape`` gives an :class:`~lightning_distill.core.export.ExportedTensorClassifier` (tensors, arrays or
    PIL images in). Both return label names when called, and have ``logits``, ``predict_ids``, ``graph`` and
    ``id2label``.

    Args:
        folder: The folder with ``config.json``, the tokenizer's files (or the input's shape) and the ``.onnx`` graphs.
        graph: File name of the graph to run: ``model.onnx`` (fp32), ``model_optimized.onnx``,
            ``model_quantized.onnx`` (int8) or ``model_quantized_emb4.onnx`` (int8, 4-bit embeddings).
        session_config: Threads, providers (``providers=["CUDAExecutionProvider", "CPUExecutionProvider"]``) and
            optimization of the ONNX Runtime session; None: one thread on the CPU.

    The graph, ``config.json`` and the tokenizer's (or preprocessor's) files are checked against the sha256s
    ``export_info.json`` records, so a graph of another export is never served with this folder's labels (a folder
    that optimum wrote, without ``export_info.json``, is not checked). The tokenizer is loaded with
    ``trust_remote_code=False``.

    Raises:
        FileNotFoundError: no such folder, no ``config.json`` in it, or no such graph (the message lists the graphs
            the folder holds).
        ExportMismatchError: the graph (or ``config.json``, or a tokenizer file) is not the one the folder's export
            wrote; the message names the file.
        RemoteCodeError: ``config.json`` or ``tokenizer_config.json`` asks to run code shipped with the folder
            (``auto_map``); nothing of the folder was loaded.
    """
    from transformers import AutoTokenizer

    from lightning_distill.core.models.pretrained import check_no_remote_code, from_pretrained

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} is no export folder: it has no config.json (write one with export_text_classifier, "
            "export_tensor_classifier or `lightning-distill export`)"
        )
    path = folder / graph
    if not path.is_file():
        present = sorted(p.name for p in folder.glob("*.onnx"))
        raise FileNotFoundError(f"{str(folder)!r} holds no graph {graph!r}; it holds {present}: pass one as graph")
    check_no_remote_code(folder, "export folder")
    verify_export(folder, graph)
    config = json.loads((folder / "config.json").read_text())
    id2label = {int(k): str(v) for k, v in config.get("id2label", {}).items()}
    session = create_session(path, session_config or OrtSessionConfig())
    outputs = session.get_outputs()[0].shape
    if isinstance(outputs[-1], int) and outputs[-1] != len(id2label):
        raise ValueError(f"{graph} predicts {outputs[-1]} classes but config.json names {len(id2label)}")
    if "input_shape" in config:
        return load_tensor_classifier(folder, path, config, session)
    return ExportedClassifier(session, from_pretrained(AutoTokenizer, folder, "export folder"), id2label, path)
