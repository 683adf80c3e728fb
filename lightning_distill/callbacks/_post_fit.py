"""What the post-fit callbacks share: which model to take, which weights, which data, and where artifacts go."""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from lightning_distill.batch import student_inputs
from lightning_distill.safe_load import load_file

Checkpoint = Literal["best", "last"]
ModelAttribute = Literal["auto", "model", "student"]


def check_choices(owner: str, checkpoint: str, model_attribute: str, dirname: str) -> None:
    if checkpoint not in ("best", "last"):
        raise ValueError(f"{owner}: checkpoint must be 'best' or 'last'; got {checkpoint!r}")
    if model_attribute not in ("auto", "model", "student"):
        raise ValueError(f"{owner}: model_attribute must be 'auto', 'model' or 'student'; got {model_attribute!r}")
    if not dirname or Path(dirname).is_absolute():
        raise ValueError(f"{owner}: dirname must be a relative folder name under the run's log dir; got {dirname!r}")


def model_attribute_of(pl_module: pl.LightningModule, model_attribute: str) -> str:
    """The attribute of the LightningModule holding the deployable model: ``student`` (distillation) or ``model``."""
    candidates = ("student", "model") if model_attribute == "auto" else (model_attribute,)
    for name in candidates:
        if isinstance(getattr(pl_module, name, None), nn.Module):
            return name
    raise ValueError(
        f"{type(pl_module).__name__} has no nn.Module attribute {' or '.join(map(repr, candidates))}; set "
        "model_attribute to the attribute that holds the trained model"
    )


def refuse_qat_alongside(trainer: pl.Trainer, owner: str) -> None:
    """Post-training steps need the float model; under QAT the model trains fake-quantized and converts itself."""
    if any(type(c).__name__ == "QuantizationAwareTraining" for c in trainer.callbacks):
        raise ValueError(
            f"{owner} works on the float model, but QuantizationAwareTraining is in the same fit and turns the model "
            "into a fake-quantized one; its own int8 artifact (quantized/qat_int8.pt) is the result of that fit. "
            f"Run {owner} in a separate fit."
        )


def best_checkpoint_path(trainer: pl.Trainer) -> str | None:
    callback = trainer.checkpoint_callback
    path = getattr(callback, "best_model_path", "") if callback is not None else ""
    return path if path and Path(path).is_file() else None


def load_checkpoint(path: str) -> dict[str, Any]:
    return load_file(path, "best checkpoint")


def submodule_state(state_dict: dict[str, Any], attribute: str) -> dict[str, Any]:
    prefix = attribute + "."
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def trained_copy(trainer: pl.Trainer, pl_module: pl.LightningModule, attribute: str, checkpoint: str) -> nn.Module:
    """A copy of the trained model in eval mode, with the best checkpoint's weights where asked and available.

    The LightningModule itself (and so every later checkpoint, ``trainer.test`` and other callbacks) is not touched.
    """
    model = copy.deepcopy(getattr(pl_module, attribute)).cpu().eval()
    if checkpoint == "best":
        path = best_checkpoint_path(trainer)
        if path is None:
            rank_zero_warn(
                "no best checkpoint was saved (no ModelCheckpoint monitoring a metric?); using the last weights"
            )
        else:
            model.load_state_dict(submodule_state(load_checkpoint(path)["state_dict"], attribute), strict=True)
    return model


def artifact_dir(trainer: pl.Trainer, dirname: str) -> Path:
    """``<log dir>/<dirname>``: the logger's version folder, or ``default_root_dir`` without a logger."""
    root = trainer.log_dir or trainer.default_root_dir
    folder = Path(root) / dirname
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def validation_batches(trainer: pl.Trainer, owner: str) -> Iterable[Any]:
    """Batches of the validation data: the data module's ``val_dataloader()``, or the loaders given to ``fit``."""
    datamodule = trainer.datamodule
    if datamodule is not None and hasattr(datamodule, "val_dataloader"):
        try:
            return datamodule.val_dataloader()
        except NotImplementedError:
            pass
    loaders = trainer.val_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    if loaders is None:
        raise ValueError(
            f"{owner} needs validation batches (for calibration or the parity check): fit with a data module that "
            "has val_dataloader(), or pass val_dataloaders to trainer.fit"
        )
    return loaders


def model_inputs(batch: Any) -> Any:
    """The model inputs of a batch (a tensor, ``(inputs, labels)``, or a dict without labels and teacher entries)."""
    return batch if isinstance(batch, torch.Tensor) else student_inputs(batch)


def label_names(trainer: pl.Trainer) -> list[str] | None:
    """Class names from the data module's ``id2label`` (a dict or a list), where it has one."""
    id2label = getattr(trainer.datamodule, "id2label", None) if trainer.datamodule is not None else None
    if isinstance(id2label, dict) and id2label:
        return [str(id2label[i]) for i in sorted(id2label)]
    if isinstance(id2label, (list, tuple)) and id2label:
        return [str(n) for n in id2label]
    return None
