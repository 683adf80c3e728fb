"""Export a copy of the trained model to ONNX when fit ends: parity check, ONNX Runtime optimization and int8."""

from __future__ import annotations

from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import write_json
from lightning_distill.core.batch import logits_of
from lightning_distill.core.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    check_parity,
    create_session,
    export_onnx,
    onnx_predictor,
    optimize_onnx,
    quantize_onnx,
)
from lightning_distill.core.export.int8_report import onnx_int8_report
from lightning_distill.core.quantization import QuantizationReport
from lightning_distill.lightning.callbacks._post_fit import (
    Checkpoint,
    artifact_dir,
    check_choices,
    describe,
    label_names,
    model_attribute_of,
    model_inputs,
    refuse_qat_alongside,
    require_validation_data,
    trained_copy,
    validation_batches,
    verify_artifact,
)

# Frozen dataclasses: one shared default instance is safe.
_DEFAULT_EXPORT = OnnxExportConfig()
_DEFAULT_ORT_INT8 = OrtQuantConfig()


class OnnxExport(Callback):
    """At the end of fit, exports a copy of the best (or last) model to ONNX and checks it on validation batches.

    Writes, under ``<log dir>/<dirname>``: ``model.onnx`` (float), ``model.optimized.onnx`` (ONNX Runtime's
    ``extended`` graph optimizations, where ``optimize``), ``model.int8.onnx`` (ONNX Runtime int8, where
    ``quantization`` is set) and ``export.json`` (the parity report and the files). The export fails with
    :class:`~lightning_distill.core.export.OnnxParityError` when ONNX Runtime and PyTorch differ by more than
    ``config.parity_atol`` on the checked batches. The trained LightningModule and its checkpoints are not changed.
    Class names come from the data module's ``id2label`` (or a Hugging Face model's config) and are stored in the
    ONNX metadata.

    In ``setup``, before any training step, it finds the model and checks that the fit has validation data and that
    the artifact folder is writable. Every file is loaded back from disk into an ONNX Runtime session and run on
    validation data before it is reported as written: ``model.onnx`` and ``model.optimized.onnx`` must match
    PyTorch within ``config.parity_atol``, ``model.int8.onnx`` must give finite logits of the right shape (its
    top-1 agreement with PyTorch is recorded in ``export.json``); a file that fails is renamed to ``<name>.broken``
    and the fit fails naming it. Which weights the int8 graph holds in int8, and which stayed float and why, is
    logged and written to ``model.int8.report.json``.

    Args:
        config: Opset, input/output names, dynamic axes, exporter and parity tolerance.
        quantization: ONNX Runtime int8 settings (``dynamic``, or ``static`` calibrated on validation batches);
            ``null`` writes no int8 model.
        optimize: Also write the graph optimized by ONNX Runtime.
        parity_batches: Validation batches the float and int8-free graphs are checked on.
        checkpoint: ``best`` or ``last`` weights (see :class:`PostTrainingQuantization`).
        model_attribute: ``auto``, a submodule name or dotted path, or ``self`` (see :class:`PostTrainingQuantization`).
        dirname: Folder under the run's log dir.
    """

    def __init__(
        self,
        config: OnnxExportConfig = _DEFAULT_EXPORT,
        quantization: OrtQuantConfig | None = _DEFAULT_ORT_INT8,
        optimize: bool = True,
        parity_batches: int = 4,
        checkpoint: Checkpoint = "best",
        model_attribute: str = "auto",
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
        self.report: QuantizationReport | None = None
        self._attribute: str | None = None
        self._folder: Path | None = None

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        refuse_qat_alongside(trainer, "OnnxExport")
        for package in ("onnx", "onnxruntime", *(("onnxscript",) if self.config.dynamo else ())):
            require(package, "OnnxExport")  # missing packages fail now, not after training
        self._attribute = model_attribute_of(pl_module, self.model_attribute, "OnnxExport")
        why = "an example input, the parity check" + (" and int8 calibration" if self._static() else "")
        require_validation_data(trainer, "OnnxExport", why)
        self._folder = artifact_dir(trainer, self.dirname, "OnnxExport")

    def _static(self) -> bool:
        return self.quantization is not None and self.quantization.mode == "static"

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._attribute is None or self._folder is None:
            return
        model = trained_copy(trainer, pl_module, self._attribute, self.checkpoint)
        batches = validation_batches(trainer, "OnnxExport")
        first = next(iter(batches))
        folder = self._folder
        onnx_path = export_onnx(model, self.config, model_inputs(first), folder / "model.onnx", label_names(trainer))
        # check_parity runs model.onnx from disk in an ONNX Runtime session: its load-back check.
        report = check_parity(onnx_path, model, islice(batches, self.parity_batches), atol=self.config.parity_atol)
        artifacts, checks = {"onnx": onnx_path}, {"onnx": asdict(report)}
        if self.optimize:
            path = optimize_onnx(onnx_path, folder / "model.optimized.onnx")
            atol = self.config.parity_atol
            checks["optimized"] = verify_artifact(
                "OnnxExport", path, lambda: asdict(check_parity(path, model, [first], atol=atol))
            )
            artifacts["optimized"] = path
        if self.quantization is not None:
            data = batches if self._static() else None
            path = quantize_onnx(onnx_path, folder / "model.int8.onnx", self.quantization, data)
            checks["int8"] = verify_artifact("OnnxExport", path, lambda: _run_int8(path, model, first))
            artifacts["int8"] = path
            self.report = onnx_int8_report(onnx_path, path, self.quantization)
            report_path = folder / "model.int8.report.json"
            write_json(report_path, {"artifact": path.name, **self.report.to_dict()})
            rank_zero_info(f"OnnxExport: {self.report.summary()}")
        self.artifacts = artifacts
        summary: dict[str, Any] = {
            "model_attribute": self._attribute if self._attribute else "self",
            "parity": asdict(report),
            "checks": checks,
            "files": {k: str(v) for k, v in artifacts.items()},
            "config": asdict(self.config),
            "quantization": asdict(self.quantization) if self.quantization is not None else None,
        }
        write_json(folder / "export.json", summary)
        rank_zero_info(
            f"OnnxExport: wrote {', '.join(str(p) for p in artifacts.values())} from {describe(self._attribute)}, "
            f"each loaded back and run; max |logit diff| vs PyTorch {report.max_abs_diff:.2e} on "
            f"{report.num_examples} validation examples"
        )


def _run_int8(path: Path, model: Any, batch: Any) -> dict[str, Any]:
    """Run the int8 graph from disk on one batch: finite logits of PyTorch's shape; top-1 agreement with PyTorch."""
    inputs = model_inputs(batch)
    actual = onnx_predictor(create_session(path))(inputs)
    with torch.no_grad():
        expected = logits_of(model, inputs).float().numpy()
    if actual.shape != expected.shape:
        raise ValueError(f"logits of shape {actual.shape}, PyTorch gives {expected.shape}")
    if not np.isfinite(actual).all():
        raise ValueError("non-finite logits")
    agreement = float((actual.argmax(-1) == expected.argmax(-1)).mean()) if expected.size else 1.0
    return {"num_examples": int(expected.shape[0]), "top1_agreement_with_pytorch": agreement}
