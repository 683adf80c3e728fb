"""The examples ``lightning-distill export`` takes from a data module: to trace and check the graphs, and to calibrate
the static int8 graph on another split than the one ``--measure`` reports.

A data module of this package has ``benchmark_data(split) -> (inputs, labels)`` and ``encode(raw) -> model inputs``;
a user's own one may have only its dataloaders, whose first batches then give the examples (the inputs being
``batch[0]``, the batch itself, or the one tensor of a mapping that is no label).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities.model_helpers import is_overridden
from torch import Tensor

__all__ = ["calibration_examples", "check_export_data", "tensor_examples"]

# Splits the static int8 graph is calibrated on, in order of preference, before the measured split.
CALIBRATION_SPLITS = ("val", "train")
_LOADERS = {
    "train": "train_dataloader",
    "val": "val_dataloader",
    "validation": "val_dataloader",
    "test": "test_dataloader",
    "predict": "predict_dataloader",
}
_LABEL_KEYS = {"label", "labels", "target", "targets", "y", "index"}


def _has_benchmark_data(datamodule: Any) -> bool:
    return callable(getattr(datamodule, "benchmark_data", None)) and callable(getattr(datamodule, "encode", None))


def _has_loader(datamodule: Any, split: str) -> bool:
    hook = _LOADERS.get(split)
    if hook is None or not callable(getattr(datamodule, hook, None)):
        return False
    return not isinstance(datamodule, pl.LightningDataModule) or is_overridden(hook, datamodule, pl.LightningDataModule)


def check_export_data(datamodule: Any, split: str, *, text: bool, measure: bool) -> None:
    """Refuse a data module ``export`` cannot take its examples from (before the checkpoint is loaded).

    Raises:
        ValueError: no ``benchmark_data``/``encode`` where they are needed (text data, ``--measure``), and for tensor
            data no dataloader of ``split`` to fall back on either; the message says what to add.
    """
    if _has_benchmark_data(datamodule):
        return
    name = type(datamodule).__name__
    add = (
        f"add to {name} `benchmark_data(self, split: str) -> (inputs, labels)` (all raw inputs and labels of a split) "
        "and `encode(self, raw) -> model inputs` (the identity for tensors)"
    )
    if text:
        raise ValueError(f"export of a text model takes its example texts from the data module: {add}")
    if measure:
        raise ValueError(f"--measure benchmarks each graph on benchmark_data({split!r}): {add}, or drop --measure")
    if not _has_loader(datamodule, split):
        raise ValueError(
            f"export takes its example inputs from the data module, but {name} has no benchmark_data nor a "
            f"{_LOADERS.get(split, split + '_dataloader')} for --split {split}: {add}, or give it that dataloader"
        )


def _batch_inputs(batch: Any, where: str) -> Tensor:
    """A batch's model inputs: ``batch[0]`` of a tuple, the tensor itself, or a mapping's one non-label tensor."""
    if isinstance(batch, Tensor):
        return batch
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        return batch[0]
    if isinstance(batch, Mapping):
        inputs = [k for k, v in batch.items() if isinstance(v, Tensor) and str(k).lower() not in _LABEL_KEYS]
        if len(inputs) == 1:
            return batch[inputs[0]]
        raise ValueError(
            f"the batches of {where} are mappings with the tensors {inputs} besides labels; an image or tensor "
            "classifier takes one: add benchmark_data(split) -> (inputs, labels) and encode to the data module"
        )
    raise ValueError(
        f"the batches of {where} are {type(batch).__name__}s, not (inputs, labels) tuples, tensors or mappings: add "
        "benchmark_data(split) -> (inputs, labels) and encode to the data module"
    )


def tensor_examples(datamodule: Any, split: str, count: int = 32) -> Tensor | None:
    """The first ``count`` model inputs of ``split`` (fewer where it is smaller); None where it has none or the data
    module has no such split."""
    datamodule.setup("test" if split in ("test", "predict") else "fit")
    if _has_benchmark_data(datamodule):
        try:
            raw = datamodule.benchmark_data(split)[0]
        except (LookupError, ValueError, NotImplementedError):  # no such split
            return None
        return datamodule.encode(raw[:count]) if len(raw) else None
    if not _has_loader(datamodule, split):
        return None
    where = f"{type(datamodule).__name__}.{_LOADERS[split]}()"
    batches: list[Tensor] = []
    for batch in getattr(datamodule, _LOADERS[split])():
        batches.append(_batch_inputs(batch, where))
        if sum(len(b) for b in batches) >= count:
            break
    return torch.cat(batches)[:count] if batches else None


def calibration_examples(datamodule: Any, measured: str, count: int = 32) -> tuple[Tensor, str]:
    """Examples to calibrate the static int8 graph on, and their split: the validation split, else the training
    split, else (with a warning) ``measured``, whose accuracy of the int8 graph is then optimistic.

    Raises:
        ValueError: not even ``measured`` has examples.
    """
    for split in (s for s in CALIBRATION_SPLITS if s != measured):
        examples = tensor_examples(datamodule, split, count)
        if examples is not None:
            return examples, split
    examples = tensor_examples(datamodule, measured, count)
    if examples is None:
        raise ValueError(f"{type(datamodule).__name__} has no examples in the splits val, train nor {measured}")
    warnings.warn(
        f"{type(datamodule).__name__} has no examples in {' nor '.join(s for s in CALIBRATION_SPLITS if s != measured)}"
        f", so the static int8 graph is calibrated on the {measured!r} split it is measured on: its accuracy there "
        "is optimistic",
        stacklevel=2,
    )
    return examples, measured
