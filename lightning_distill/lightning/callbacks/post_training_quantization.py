"""Quantize a copy of the trained model when fit ends and save it under the run's log dir."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_distill.core.benchmark import file_size_mb
from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QuantizationReport,
    StaticQuantConfig,
    check_quantizable,
    quantize,
)
from lightning_distill.core.quantization.quantize import check_engine
from lightning_distill.lightning.callbacks._post_fit import (
    Checkpoint,
    artifact_dir,
    check_batch,
    check_choices,
    describe,
    model_attribute_of,
    refuse_qat_alongside,
    require_validation_data,
    save_checked_quantized,
    submodel,
    trained_copy,
    validation_batches,
)


def _default_filename(config: DynamicQuantConfig | StaticQuantConfig | BitsAndBytesConfig) -> str:
    if isinstance(config, BitsAndBytesConfig):
        return f"bnb_{config.weights}.pt"
    if isinstance(config, StaticQuantConfig):
        return f"static_int8_{config.backend}.pt"
    return f"dynamic_{config.dtype}.pt"


_DEFAULT_CONFIG = DynamicQuantConfig()  # frozen: one shared default instance is safe


class PostTrainingQuantization(Callback):
    """At the end of fit, quantizes a copy of the best (or last) model and saves it with ``save_quantized``.

    The trained LightningModule and its checkpoints are not changed, so resuming, ``trainer.test(ckpt_path=...)`` and
    pruning callbacks work as without this callback. Static quantization calibrates on the first
    ``config.calibration_batches`` validation batches. Reload the artifact with
    ``load_quantized(path, <float model of the same architecture>)``.

    In ``setup``, before any training step, it finds the model, checks that the config can quantize it (backend,
    at least one layer it converts), that static quantization has validation data, and that the artifact folder is
    writable. After saving, the file is loaded back with ``load_quantized`` and run on one validation batch (a
    training batch where the fit has none); it must give the in-memory quantized model's logits, or the fit fails
    naming the file. The per-layer summary (which weight layers were quantized, which stayed float and why) is
    logged and written beside the artifact as ``<name>.report.json``.

    Args:
        config: ``DynamicQuantConfig``, ``StaticQuantConfig`` or ``BitsAndBytesConfig`` (for QAT use
            :class:`QuantizationAwareTraining`).
        checkpoint: ``best``: the weights of the checkpoint callback's best model (the last ones when there is
            none); ``last``: the weights at the end of fit.
        model_attribute: Which submodule of the LightningModule is the model: ``auto`` takes ``student`` (distillation),
            else ``model``, else the single child module with parameters that is not a loss or metric; a name or
            dotted path (``net``, ``backbone.encoder``); or ``self`` for the LightningModule itself.
        dirname: Folder under the run's log dir for the artifact.
        filename: File name; default from the config, e.g. ``static_int8_x86.pt``.
    """

    def __init__(
        self,
        config: DynamicQuantConfig | StaticQuantConfig | BitsAndBytesConfig = _DEFAULT_CONFIG,
        checkpoint: Checkpoint = "best",
        model_attribute: str = "auto",
        dirname: str = "quantized",
        filename: str | None = None,
    ) -> None:
        if not isinstance(config, (DynamicQuantConfig, StaticQuantConfig, BitsAndBytesConfig)):
            raise ValueError(
                "PostTrainingQuantization: config must be a DynamicQuantConfig, StaticQuantConfig or "
                f"BitsAndBytesConfig; got {type(config).__name__} (for QAT use the QuantizationAwareTraining callback)"
            )
        check_engine(config)  # the engine's PyTorch stack (torch.ao.quantization, torchao PT2E) imports here
        check_choices("PostTrainingQuantization", checkpoint, model_attribute, dirname)
        self.config = config
        self.checkpoint = checkpoint
        self.model_attribute = model_attribute
        self.dirname = dirname
        self.filename = filename or _default_filename(config)
        self.artifact_path: Path | None = None
        self.report: QuantizationReport | None = None
        self._attribute: str | None = None
        self._folder: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        owner = "PostTrainingQuantization"
        refuse_qat_alongside(trainer, owner)
        self._attribute = model_attribute_of(pl_module, self.model_attribute, owner)
        check_quantizable(submodel(pl_module, self._attribute), self.config)
        if isinstance(self.config, StaticQuantConfig):
            require_validation_data(trainer, owner, "to calibrate static quantization")
        self._folder = artifact_dir(trainer, self.dirname, owner)

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._attribute is None or self._folder is None:
            return
        owner = "PostTrainingQuantization"
        model = trained_copy(trainer, pl_module, self._attribute, self.checkpoint)
        data = validation_batches(trainer, owner) if isinstance(self.config, StaticQuantConfig) else None
        quantized = quantize(model, self.config, calibration_data=data)
        batch = check_batch(trainer, owner)
        path = save_checked_quantized(owner, quantized, model, self._folder / self.filename, batch)
        self.artifact_path, self.report = path, quantized.quantization_report
        rank_zero_info(
            f"{owner}: saved {type(self.config).__name__} model of {describe(self._attribute)} to {path} "
            f"({file_size_mb(path):.3f} MB), loaded back and checked on a {batch[1]} batch"
        )
