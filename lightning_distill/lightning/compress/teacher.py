"""The teacher of a search: fit once (or taken from its checkpoint), exported once, its figures measured once."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_distill.core.atomic import write_json
from lightning_distill.core.benchmark.measure import accuracy, file_size_mb
from lightning_distill.core.export import OnnxExportConfig, export_onnx
from lightning_distill.lightning.cli import DistillCLI, output_arguments
from lightning_distill.lightning.compress.config import CompressConfig, CompressConfigError
from lightning_distill.lightning.compress.quiet import QUIET_TRAINER


@dataclass(frozen=True)
class TeacherRecord:
    """What every trial needs of the teacher.

    Args:
        checkpoint: The teacher's trained weights.
        spec: The teacher's architecture, ``{class_path, init_args}`` (its fit config's ``model.init_args.model``).
    """

    checkpoint: str
    spec: dict[str, Any]


def teacher_spec(config: CompressConfig) -> dict[str, Any]:
    """The teacher's architecture from its fit config; refused by name when the config has none."""
    path = Path(config.teacher.config)
    if not path.is_file():
        raise CompressConfigError(f"teacher.config {str(path)!r} does not exist (paths are taken from {Path.cwd()})")
    fit = yaml.safe_load(path.read_text()) or {}
    spec = ((fit.get("model") or {}).get("init_args") or {}).get("model")
    if not isinstance(spec, dict) or "class_path" not in spec:
        raise CompressConfigError(
            f"teacher.config {str(path)!r} has no model.init_args.model with a class_path: give the fit config of a "
            "ClassifierModule (e.g. configs/digits/teacher.yaml)"
        )
    if config.teacher.checkpoint is not None and not Path(config.teacher.checkpoint).is_file():
        raise CompressConfigError(f"teacher.checkpoint {config.teacher.checkpoint!r} does not exist")
    return spec


def fit_teacher(config: CompressConfig, spec: dict[str, Any]) -> TeacherRecord:
    """The given checkpoint, or the teacher fit once into ``<output_dir>/teacher`` (reused when a stopped search
    resumes: ``teacher.json`` there names its checkpoint)."""
    if config.teacher.checkpoint is not None:
        return TeacherRecord(config.teacher.checkpoint, spec)
    folder = config.output / "teacher"
    record = folder / "teacher.json"
    if record.is_file():
        saved = json.loads(record.read_text())
        if Path(saved["checkpoint"]).is_file():
            return TeacherRecord(saved["checkpoint"], spec)
    print(f"[compress] fitting the teacher of {config.teacher.config} once -> {folder}", flush=True)
    fit = yaml.safe_load(Path(config.teacher.config).read_text())
    args = ["fit", "--config", config.teacher.config, f"--data={json.dumps(config.data)}"]
    args += output_arguments(fit, root_dir=folder, log_dir=folder, checkpoint_dir=folder / "checkpoints")
    cli = DistillCLI(args=[*args, f"--seed_everything={config.seed}", *QUIET_TRAINER])
    checkpoint = cli.trainer.checkpoint_callback.best_model_path if cli.trainer.checkpoint_callback else ""
    if not checkpoint or not Path(checkpoint).is_file():
        raise RuntimeError(f"the teacher fit of {config.teacher.config} saved no checkpoint; give it a ModelCheckpoint")
    write_json(record, {"checkpoint": checkpoint, "config": config.teacher.config})
    return TeacherRecord(checkpoint, spec)


def export_teacher(teacher: Any, datamodule: Any, folder: Path) -> dict[str, Any]:
    """The teacher's fp32 ONNX graph (what students are compared with) and its validation accuracy and size."""
    from lightning_distill.lightning.compress.candidate import load_predictor

    path = folder / "model.onnx"
    example = datamodule.encode(datamodule.benchmark_data("val")[0][:1])
    export_onnx(teacher.cpu().eval(), OnnxExportConfig(), example, path)
    inputs, labels = datamodule.benchmark_data("val")
    return {
        "artifact": str(path),
        "val_accuracy": accuracy(load_predictor(path, datamodule.encode), inputs, labels),
        "size_mb": round(file_size_mb(path), 6),
    }
