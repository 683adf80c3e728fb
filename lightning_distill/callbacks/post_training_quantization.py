"""Quantize a copy of the trained model when fit ends and save it under the run's log dir."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_distill.benchmark import file_size_mb
from lightning_distill.callbacks._post_fit import (
    Checkpoint,
    ModelAttribute,
    artifact_dir,
    check_choices,
    model_attribute_of,
    refuse_qat_alongside,
    trained_copy,
    validation_batches,
)
from lightning_distill.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    StaticQuantConfig,
    quantize,
    save_quantized,
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

    Args:
        config: ``DynamicQuantConfig``, ``StaticQuantConfig`` or ``BitsAndBytesConfig`` (for QAT use
            :class:`QuantizationAwareTraining`).
        checkpoint: ``best``: the weights of the checkpoint callback's best model (the last ones when there is
            none); ``last``: the weights at the end of fit.
        model_attribute: Attribute of the LightningModule holding the model: ``auto`` takes ``student`` where there
            is one (distillation), else ``model``.
        dirname: Folder under the run's log dir for the artifact.
        filename: File name; default from the config, e.g. ``static_int8_x86.pt``.
    """

    def __init__(
        self,
        config: DynamicQuantConfig | StaticQuantConfig | BitsAndBytesConfig = _DEFAULT_CONFIG,
        checkpoint: Checkpoint = "best",
        model_attribute: ModelAttribute = "auto",
        dirname: str = "quantized",
        filename: str | None = None,
    ) -> None:
        if not isinstance(config, (DynamicQuantConfig, StaticQuantConfig, BitsAndBytesConfig)):
            raise ValueError(
                "PostTrainingQuantization: config must be a DynamicQuantConfig, StaticQuantConfig or "
                f"BitsAndBytesConfig; got {type(config).__name__} (for QAT use the QuantizationAwareTraining callback)"
            )
        check_choices("PostTrainingQuantization", checkpoint, model_attribute, dirname)
        self.config = config
        self.checkpoint = checkpoint
        self.model_attribute = model_attribute
        self.dirname = dirname
        self.filename = filename or _default_filename(config)
        self.artifact_path: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        refuse_qat_alongside(trainer, "PostTrainingQuantization")

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        attribute = model_attribute_of(pl_module, self.model_attribute)
        model = trained_copy(trainer, pl_module, attribute, self.checkpoint)
        data = (
            validation_batches(trainer, "PostTrainingQuantization")
            if isinstance(self.config, StaticQuantConfig)
            else None
        )
        quantized = quantize(model, self.config, calibration_data=data)
        self.artifact_path = save_quantized(quantized, artifact_dir(trainer, self.dirname) / self.filename)
        rank_zero_info(
            f"PostTrainingQuantization: saved {type(self.config).__name__} model of {attribute!r} to "
            f"{self.artifact_path} ({file_size_mb(self.artifact_path):.3f} MB)"
        )
