"""A trial's deployable artifact: the student's fp32 ONNX graph, its ONNX Runtime int8 copy, or torchao int8.

Each artifact is written to the trial's folder and measured as reloaded from disk, so the search ranks what would be
deployed. The float student is kept beside it (``student.pt`` and ``student.json``) to rebuild torchao artifacts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_distill.core.atomic import write_json, write_torch
from lightning_distill.core.benchmark.measure import PredictFn, module_predictor
from lightning_distill.core.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    OrtSessionConfig,
    create_session,
    export_onnx,
    onnx_predictor,
    quantize_onnx,
)
from lightning_distill.core.quantization import DynamicQuantConfig, load_quantized, quantize, save_quantized
from lightning_distill.lightning.compress.measure import NUM_THREADS

ARTIFACT_FILES = {"none": "model.onnx", "ort_dynamic": "model_quantized.onnx", "torchao_dynamic": "model_torchao.pt"}
STUDENT_FILES = ("student.json", "student.pt")


def student_spec(family_spec: dict[str, Any], student: nn.Module) -> dict[str, Any]:
    """The family's ``class_path``/``init_args`` with the sizes the data module linked in (``in_features``,
    ``num_classes``), enough to rebuild the student's architecture."""
    linked = {name: getattr(student, name) for name in ("in_features", "num_classes") if hasattr(student, name)}
    return {"class_path": family_spec["class_path"], "init_args": {**family_spec.get("init_args", {}), **linked}}


def build_student(spec: dict[str, Any]) -> nn.Module:
    """An untrained student from ``{class_path, init_args}``."""
    module_name, _, class_name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)(**spec.get("init_args", {}))


def write_artifact(student: nn.Module, spec: dict[str, Any], int8: str, folder: Path, example: Any) -> Path:
    """Write the float student and its artifact for ``int8`` (see :data:`ARTIFACT_FILES`) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    student = student.cpu().eval()
    write_json(folder / "student.json", spec)
    write_torch(folder / "student.pt", student.state_dict())
    path = folder / ARTIFACT_FILES[int8]
    if int8 == "torchao_dynamic":
        save_quantized(quantize(student, DynamicQuantConfig(engine="torchao")), path)
        return path
    fp32 = export_onnx(student, OnnxExportConfig(), example, folder / ARTIFACT_FILES["none"])
    if int8 == "ort_dynamic":
        quantize_onnx(fp32, path, OrtQuantConfig(mode="dynamic"))
    return path


def load_predictor(path: str | Path, encode: Any) -> PredictFn:
    """Reload an artifact written by :func:`write_artifact` (or the teacher's ``.onnx``) as a one-thread predictor."""
    path = Path(path)
    if path.suffix == ".onnx":
        session = create_session(path, OrtSessionConfig(intra_op_num_threads=NUM_THREADS, inter_op_num_threads=1))
        return onnx_predictor(session, encode)
    spec = _read_json(path.parent / "student.json")
    float_model = build_student(spec)
    float_model.load_state_dict(torch.load(path.parent / "student.pt", weights_only=True))
    return module_predictor(load_quantized(path, float_model), encode)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the artifact beside it cannot be rebuilt without its student spec")
    return json.loads(path.read_text())
