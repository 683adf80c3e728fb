"""Export a copy of the trained model to ONNX when fit ends: parity check, ONNX Runtime optimization and int8."""

from __future__ import annotations

import json
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_distill.callbacks._post_fit import (
    Checkpoint,
    ModelAttribute,
    artifact_dir,
    check_choices,
    label_names,
    model_attribute_of,
    model_inputs,
    refuse_qat_alongside,
    trained_copy,
    validation_batches,
)
from lightning_distill.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    check_parity,
    export_onnx,
    optimize_onnx,
    quantize_onnx,
)

# Frozen dataclasses: one shared default instance is safe.
_DEFAULT_EXPORT = OnnxExportConfig()
_DEFAULT_ORT_INT8 = OrtQuantConfig()


class OnnxExport(Callback):
    """At the end of fit, exports a copy of the best (or last) model to ONNX and checks it on validation batches.

    Writes, under ``<log dir>/<dirname>``: ``model.onnx`` (float), ``model.optimized.onnx`` (ONNX Runtime's
    ``extended`` graph optimizations, where ``optimize``), ``model.int8.onnx`` (ONNX Runtime int8, where
    ``quantization`` is set) and ``export.json`` (the parity report and the files). The export fails with
    :class:`~lightning_distill.export.OnnxParityError` when ONNX Runtime and PyTorch differ by more than
    ``config.parity_atol`` on the checked batches. The trained LightningModule and its checkpoints are not changed.
    Class names come from the data module's ``id2label`` (or a Hugging Face model's config) and are stored in the
    ONNX metadata.

    Args:
        config: Opset, input/output names, dynamic axes, exporter and parity tolerance.
        quantization: ONNX Runtime int8 settings (``dynamic``, or ``static`` calibrated on validation batches);
            ``null`` writes no int8 model.
        optimize: Also write the graph optimized by ONNX Runtime.
        parity_batches: Validation batches the float and int8-free graphs are checked on.
        checkpoint: ``best`` or ``last`` weights (see :class:`PostTrainingQuantization`).
        model_attribute: ``auto``, ``model`` or ``student``.
        dirname: Folder under the run's log dir.
    """

    def __init__(
        self,
        config: OnnxExportConfig = _DEFAULT_EXPORT,
        quantization: OrtQuantConfig | None = _DEFAULT_ORT_INT8,
        optimize: bool = True,
        parity_batches: int = 4,
        checkpoint: Checkpoint = "best",
        model_attribute: ModelAttribute = "auto",
        dirname: str = "onnx",
    ) -> None:
        check_choices("OnnxExport", checkpoint, model_attribute, dirname)
        if not isinstance(parity_batches, int) or parity_batches < 1:
            raise ValueError(f"OnnxExport: parity_batches must be an int >= 1; got {parity_batches!r}")
        self.config = config
        self.quantization = quantization
        self.optimize = optimize
        self.parity_batches = parity_batches
        self.checkpoint = checkpoint
        self.model_attribute = model_attribute
        self.dirname = dirname
        self.artifacts: dict[str, Path] = {}

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        refuse_qat_alongside(trainer, "OnnxExport")

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        attribute = model_attribute_of(pl_module, self.model_attribute)
        model = trained_copy(trainer, pl_module, attribute, self.checkpoint)
        batches = validation_batches(trainer, "OnnxExport")
        example = model_inputs(next(iter(batches)))
        folder = artifact_dir(trainer, self.dirname)
        artifacts = {"onnx": export_onnx(model, self.config, example, folder / "model.onnx", label_names(trainer))}
        report = check_parity(
            artifacts["onnx"], model, islice(batches, self.parity_batches), atol=self.config.parity_atol
        )
        if self.optimize:
            artifacts["optimized"] = optimize_onnx(artifacts["onnx"], folder / "model.optimized.onnx")
        if self.quantization is not None:
            data = batches if self.quantization.mode == "static" else None
            artifacts["int8"] = quantize_onnx(artifacts["onnx"], folder / "model.int8.onnx", self.quantization, data)
        self.artifacts = artifacts
        summary: dict[str, Any] = {
            "model_attribute": attribute,
            "parity": asdict(report),
            "files": {k: str(v) for k, v in artifacts.items()},
            "config": asdict(self.config),
            "quantization": asdict(self.quantization) if self.quantization is not None else None,
        }
        (folder / "export.json").write_text(json.dumps(summary, indent=2) + "\n")
        rank_zero_info(
            f"OnnxExport: wrote {', '.join(str(p) for p in artifacts.values())}; max |logit diff| vs PyTorch "
            f"{report.max_abs_diff:.2e} on {report.num_examples} validation examples"
        )
