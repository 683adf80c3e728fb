"""Checking an ONNX graph against the PyTorch model it came from, on real batches, through ONNX Runtime."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lightning_distill.core.batch import logits_of, model_inputs
from lightning_distill.core.export.config import OrtSessionConfig
from lightning_distill.core.export.runtime import create_session, numpy_feed


class OnnxParityError(AssertionError):
    """ONNX Runtime and PyTorch disagree by more than the tolerance; the message names the difference and input."""


@dataclass(frozen=True)
class ParityReport:
    """Result of :func:`check_parity`: the largest absolute logit difference over all checked examples."""

    max_abs_diff: float
    atol: float
    num_batches: int
    num_examples: int


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
    session = create_session(onnx_model, OrtSessionConfig()) if isinstance(onnx_model, (str, Path)) else onnx_model
    names = [i.name for i in session.get_inputs()]
    model = copy.deepcopy(model).float().eval()
    worst, worst_feed, count, examples = -1.0, None, 0, 0
    for batch in batches:
        if max_batches is not None and count >= max_batches:
            break
        inputs = model_inputs(batch)
        with torch.no_grad():
            expected = logits_of(model, inputs).float().numpy()
        feed = numpy_feed(inputs, names)
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
