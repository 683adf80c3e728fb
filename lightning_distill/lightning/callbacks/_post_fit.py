"""What the post-fit callbacks share: which model to take, which weights, which data, and where artifacts go."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch import nn

from lightning_distill.core.atomic import write_json
from lightning_distill.core.batch import logits_of, model_inputs
from lightning_distill.core.quantization import load_quantized, save_quantized
from lightning_distill.core.quantization.report import REPORT_ATTRIBUTE
from lightning_distill.core.safe_load import load_file
from lightning_distill.lightning.modules._attribute import check_model_attribute, resolve_model_attribute
from lightning_distill.lightning.modules.deployable import load_deployable

Checkpoint = Literal["best", "last"]


def check_choices(owner: str, checkpoint: str, model_attribute: str, dirname: str) -> None:
    if checkpoint not in ("best", "last"):
        raise ValueError(f"{owner}: checkpoint must be 'best' or 'last'; got {checkpoint!r}")
    check_model_attribute(owner, model_attribute)
    if not dirname or Path(dirname).is_absolute():
        raise ValueError(f"{owner}: dirname must be a relative folder name under the run's log dir; got {dirname!r}")


def model_attribute_of(pl_module: pl.LightningModule, model_attribute: str, owner: str) -> str:
    """The path of the deployable model in the LightningModule (``""``: the module itself); see ``_attribute``."""
    return resolve_model_attribute(pl_module, model_attribute, owner)[0]


def submodel(pl_module: pl.LightningModule, attribute: str) -> nn.Module:
    return pl_module.get_submodule(attribute)


def describe(attribute: str) -> str:
    """How messages name the model at ``attribute``."""
    return repr(attribute) if attribute else "the LightningModule"


class ArtifactCheckError(RuntimeError):
    """A written artifact failed when loaded back and run; it was renamed to ``<name>.broken``."""


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
    prefix = attribute + "." if attribute else ""
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def trained_copy(trainer: pl.Trainer, pl_module: pl.LightningModule, attribute: str, checkpoint: str) -> nn.Module:
    """A copy of the trained model in eval mode, with the best checkpoint's weights where asked and available.

    The LightningModule itself (and so every later checkpoint, ``trainer.test`` and other callbacks) is not touched.
    """
    model = copy.deepcopy(submodel(pl_module, attribute)).cpu().eval()  # a LightningModule copies without trainer
    if checkpoint == "best":
        path = best_checkpoint_path(trainer)
        if path is None:
            rank_zero_warn(
                "no best checkpoint was saved (no ModelCheckpoint monitoring a metric?); using the last weights"
            )
        else:
            state = submodule_state(load_checkpoint(path)["state_dict"], attribute)
            model = load_deployable(model, state, model_attribute="self", what=f"best checkpoint {path}")
    return model


def artifact_dir(trainer: pl.Trainer, dirname: str, owner: str) -> Path:
    """``<log dir>/<dirname>``, created and checked writable: the logger's version folder, or ``default_root_dir``.

    Call it on every process (``trainer.log_dir`` broadcasts), in ``setup``, so an unwritable folder fails before
    training rather than after it.
    """
    folder = Path(trainer.log_dir or trainer.default_root_dir) / dirname
    probe = folder / f".write-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise OSError(
            f"{owner} cannot write its artifacts to {str(folder)!r} ({type(error).__name__}: "
            f"{error.strerror or error}); fix the folder's permissions, or set dirname (or the logger's save_dir / "
            "trainer.default_root_dir) to a writable place. Checked before training, so no step was run"
        ) from error
    return folder


def _val_source(trainer: pl.Trainer) -> Any:
    # Where fit's validation loaders come from (a data module, the LightningModule, or the loaders given to fit):
    # known from ``setup`` on, while ``trainer.val_dataloaders`` is only filled once validation first runs.
    return trainer.fit_loop.epoch_loop.val_loop._data_source


def has_validation_data(trainer: pl.Trainer) -> bool:
    source = _val_source(trainer)
    return source.instance is not None and source.is_defined()


def require_validation_data(trainer: pl.Trainer, owner: str, why: str) -> None:
    """Raise (in ``setup``, before training) when the fit has no validation data."""
    if not has_validation_data(trainer):
        raise ValueError(
            f"{owner} needs validation batches ({why}), and this fit has none: fit with a data module that has "
            "val_dataloader(), or pass val_dataloaders to trainer.fit. Checked before training, so no step was run"
        )


def _first_loader(loaders: Any) -> Any:
    if isinstance(loaders, (list, tuple)):
        return loaders[0] if loaders else None
    if isinstance(loaders, dict):
        return next(iter(loaders.values()), None)
    return loaders


def validation_batches(trainer: pl.Trainer, owner: str) -> Iterable[Any]:
    """Batches of the validation data: the data module's ``val_dataloader()``, or the loaders given to ``fit``."""
    loader = _first_loader(_val_source(trainer).dataloader()) if has_validation_data(trainer) else None
    if loader is None:
        require_validation_data(trainer, owner, "for calibration or the parity check")
        raise ValueError(f"{owner} needs validation batches; the validation data source returned no loader")
    return loader


def check_batch(trainer: pl.Trainer, owner: str) -> tuple[Any, str]:
    """One batch to run a reloaded artifact on: the first validation batch, or the first training batch where the
    fit has no validation data; and which of the two it is."""
    if has_validation_data(trainer):
        return next(iter(validation_batches(trainer, owner))), "validation"
    return next(iter(_first_loader(trainer.fit_loop._data_source.dataloader()))), "training"


def verify_artifact(owner: str, path: Path, check: Any) -> Any:
    """Run ``check()`` (load ``path`` back from disk and run it); on failure rename the file to ``<name>.broken`` and
    raise :class:`ArtifactCheckError` naming the artifact and the error."""
    try:
        return check()
    except Exception as error:
        broken = path.with_name(path.name + ".broken")
        if path.is_file():
            path.replace(broken)
        raise ArtifactCheckError(
            f"{owner} wrote {str(path)!r}, but loaded back from disk it fails on a batch ({type(error).__name__}: "
            f"{error}); it was not saved as an artifact (the file was renamed to {broken.name} for inspection)"
        ) from error


def label_names(trainer: pl.Trainer) -> list[str] | None:
    """Class names from the data module's ``id2label`` (a dict or a list), where it has one."""
    id2label = getattr(trainer.datamodule, "id2label", None) if trainer.datamodule is not None else None
    if isinstance(id2label, dict) and id2label:
        return [str(id2label[i]) for i in sorted(id2label)]
    if isinstance(id2label, (list, tuple)) and id2label:
        return [str(n) for n in id2label]
    return None


def _logits(model: nn.Module, inputs: Any) -> torch.Tensor:
    device = next((t.device for t in (*model.parameters(), *model.buffers())), torch.device("cpu"))
    if isinstance(inputs, dict):
        inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    elif isinstance(inputs, torch.Tensor):
        inputs = inputs.to(device)
    with torch.inference_mode():
        return logits_of(model, inputs).detach().float().cpu()


def save_checked_quantized(
    owner: str, quantized: nn.Module, float_model: nn.Module, path: Path, batch: tuple[Any, str]
) -> Path:
    """Run ``quantized`` on ``batch``, save it, load the file back with ``load_quantized`` (on ``float_model``, a
    float model of the same architecture), check that it gives the same logits, and write the per-layer report as
    ``<name>.report.json`` beside it. Returns ``path``.

    Raises:
        ArtifactCheckError: the quantized model, or the file loaded back, fails on the batch or disagrees.
    """
    inputs, kind = model_inputs(batch[0]), batch[1]
    try:
        expected = _logits(quantized, inputs)
    except Exception as error:
        raise ArtifactCheckError(
            f"{owner}: the quantized model fails on a {kind} batch ({type(error).__name__}: {error}); nothing was saved"
        ) from error
    path = save_quantized(quantized, path)
    # load_quantized rebuilds on CPU: a model quantized on a GPU gives slightly different numbers there.
    same_device = all(t.device.type == "cpu" for t in (*quantized.parameters(), *quantized.buffers()))

    def check() -> None:
        actual = _logits(load_quantized(path, float_model), inputs)
        if actual.shape != expected.shape:
            raise ValueError(f"logits of shape {tuple(actual.shape)}, expected {tuple(expected.shape)}")
        diff = float((actual - expected).abs().max()) if expected.numel() else 0.0
        if same_device and diff > 1e-5 * max(1.0, float(expected.abs().max())):
            raise ValueError(f"its logits differ from the in-memory quantized model's by up to {diff:.3g}")

    verify_artifact(owner, path, check)
    report = getattr(quantized, REPORT_ATTRIBUTE, None)
    if report is not None:
        summary = {"artifact": path.name, "checked_on": f"one {kind} batch, reloaded from disk", **report.to_dict()}
        write_json(path.with_name(f"{path.stem}.report.json"), summary)
        rank_zero_info(f"{owner}: {report.summary()}")
    return path
