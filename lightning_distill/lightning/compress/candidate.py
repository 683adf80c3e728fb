"""A trial's deployable artifact: a graph of the student's export folder (fp32, or ONNX Runtime dynamic or static
int8), or torchao int8.

ONNX artifacts are graphs of an export folder (``<trial>/export/``, written by
:func:`~lightning_distill.core.export.export_tensor_classifier`), so the chosen one is served as the search measured it.
Each artifact is measured as reloaded from disk, so the search ranks what would be deployed. The float student is kept
in the trial's folder (``student.pt`` and ``student.json``) to rebuild torchao artifacts and the chosen export folder.
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
    OrtQuantConfig,
    OrtSessionConfig,
    create_session,
    export_tensor_classifier,
    onnx_predictor,
)
from lightning_distill.core.quantization import DynamicQuantConfig, load_quantized, quantize, save_quantized
from lightning_distill.lightning.compress.measure import NUM_THREADS

ARTIFACT_FILES = {
    "none": "model.onnx",
    "ort_dynamic": "model_quantized.onnx",
    "ort_static": "model_quantized.onnx",
    "torchao_dynamic": "model_torchao.pt",
}
STUDENT_FILES = ("student.json", "student.pt")
EXPORT_FOLDER = "export"
# Validation examples of the export's trace, parity check and static int8 calibration.
CALIBRATION_EXAMPLES = 64


def student_spec(family_spec: dict[str, Any], student: nn.Module) -> dict[str, Any]:
    """The family's ``class_path``/``init_args`` with the sizes the data module linked in (``in_features``,
    ``num_classes``), enough to rebuild the student's architecture."""
    linked = {name: getattr(student, name) for name in ("in_features", "num_classes") if hasattr(student, name)}
    return {"class_path": family_spec["class_path"], "init_args": {**family_spec.get("init_args", {}), **linked}}


def build_student(spec: dict[str, Any]) -> nn.Module:
    """An untrained student from ``{class_path, init_args}``."""
    module_name, _, class_name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)(**spec.get("init_args", {}))


def calibration_inputs(datamodule: Any) -> Any:
    """The first :data:`CALIBRATION_EXAMPLES` validation inputs, encoded: every export's trace and calibration data."""
    return datamodule.encode(datamodule.benchmark_data("val")[0][:CALIBRATION_EXAMPLES])


def export_student(
    student: nn.Module, folder: Path, datamodule: Any, int8: str = "none", provenance: dict[str, str] | None = None
) -> Path:
    """``student`` as an export folder: the fp32 graph, plus ``model_quantized.onnx`` for the ``ort_*`` schemes.

    Returns:
        The graph the scheme deploys (``model.onnx`` for ``none`` and ``torchao_dynamic``).
    """
    graphs = ("fp32", "int8") if int8.startswith("ort_") else ("fp32",)
    mode = "static" if int8 == "ort_static" else "dynamic"
    written = export_tensor_classifier(
        student,
        folder,
        calibration_inputs(datamodule),
        id2label=getattr(datamodule, "id2label", None),
        preprocessing=getattr(datamodule, "preprocessing", None),
        graphs=graphs,
        quantization=OrtQuantConfig(mode=mode),
        title=f"{type(student).__name__} distilled by lightning-distill compress",
        provenance=provenance,
        overwrite=True,
    )
    return written["int8" if int8.startswith("ort_") else "fp32"]


def write_artifact(student: nn.Module, spec: dict[str, Any], int8: str, folder: Path, datamodule: Any) -> Path:
    """Write the float student and its artifact for ``int8`` (see :data:`ARTIFACT_FILES`) into ``folder``: ONNX
    graphs in the export folder ``folder/export``, torchao's beside the student."""
    folder.mkdir(parents=True, exist_ok=True)
    student = student.cpu().eval()
    write_json(folder / "student.json", spec)
    write_torch(folder / "student.pt", student.state_dict())
    if int8 == "torchao_dynamic":
        path = folder / ARTIFACT_FILES[int8]
        save_quantized(quantize(student, DynamicQuantConfig(engine="torchao")), path)
        return path
    return export_student(student, folder / EXPORT_FOLDER, datamodule, int8)


def trial_folder(artifact: str | Path) -> Path:
    """The trial's folder (``student.json``, ``student.pt``) of an artifact written by :func:`write_artifact`."""
    artifact = Path(artifact)
    return artifact.parent.parent if artifact.parent.name == EXPORT_FOLDER else artifact.parent


def load_student(folder: Path) -> nn.Module:
    """The float student of a trial's folder, rebuilt from ``student.json`` with ``student.pt``'s weights."""
    model = build_student(_read_json(folder / "student.json"))
    model.load_state_dict(torch.load(folder / "student.pt", weights_only=True))
    return model.eval()


def load_predictor(path: str | Path, encode: Any) -> PredictFn:
    """Reload an artifact written by :func:`write_artifact` (or the teacher's ``.onnx``) as a one-thread predictor."""
    path = Path(path)
    if path.suffix == ".onnx":
        session = create_session(path, OrtSessionConfig(intra_op_num_threads=NUM_THREADS, inter_op_num_threads=1))
        return onnx_predictor(session, encode)
    return module_predictor(load_quantized(path, load_student(path.parent)), encode)


def _read_json(path: Path) -> dict[str, Any]:
    import json

    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the artifact beside it cannot be rebuilt without its student spec")
    return json.loads(path.read_text())
