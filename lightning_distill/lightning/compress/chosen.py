"""The chosen artifact as an export folder, ``<output_dir>/chosen/``, whose model card states the budget, the machine
and the measured figures; ``chosen.json`` beside it holds the same, machine-readable.

ONNX Runtime artifacts (``none``, ``ort_dynamic``, ``ort_static``) were measured as graphs of the trial's export folder,
which is copied whole: the graph served is the one measured. A torchao artifact is no ONNX graph: the folder holds the
same student's fp32 graph (not measured) and ``model_torchao.pt`` beside it, and the card says which file the figures
are for.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import replace_folder, write_json
from lightning_distill.core.export import read_export_info, write_model_card
from lightning_distill.lightning.compress.budget import describe
from lightning_distill.lightning.compress.candidate import (
    EXPORT_FOLDER,
    STUDENT_FILES,
    export_student,
    load_student,
    trial_folder,
)


def write_chosen(folder: Path, record: dict[str, Any], statement: dict[str, Any], datamodule: Any) -> Path:
    """Replace ``folder`` as a whole with the chosen trial's export folder, its float student and ``chosen.json``.

    Args:
        folder: ``<output_dir>/chosen``.
        record: The chosen trial's record (its ``artifact`` path, settings and figures).
        statement: The budget, the machine and the teacher's figures, written into the card and ``chosen.json``.
        datamodule: The search's data module (label names, preprocessing, the export's example inputs).

    Returns:
        The artifact's path inside ``folder``.
    """
    artifact = Path(record["artifact"])
    trial = trial_folder(artifact)
    with replace_folder(folder) as staged:
        if artifact.parent.name == EXPORT_FOLDER:
            shutil.copytree(artifact.parent, staged, dirs_exist_ok=True)
        else:
            export_student(load_student(trial), staged, datamodule, "none")
            shutil.copy2(artifact, staged / artifact.name)
        for name in STUDENT_FILES:
            shutil.copy2(trial / name, staged / name)
        info = read_export_info(staged)
        info["title"] = f"{info.get('title', 'Student')}: trial {record['number']} of a search under a budget"
        info["provenance"] = {**info.get("provenance", {}), **card_statement(record, statement, artifact.name)}
        if artifact.suffix == ".onnx":
            info["measurements"] = {artifact.name: _measurement(record, statement)}
        write_model_card(staged, info)
        write_json(staged / "chosen.json", {**statement, "artifact": artifact.name, "trial": record})
    return folder / artifact.name


# How each budget limit bounds its figure (latency_ratio and min_accuracy are floors, the others ceilings).
_BOUND = {
    "latency_ms": "<=",
    "latency_ratio": ">=",
    "size_mb": "<=",
    "size_ratio": "<=",
    "min_accuracy": ">=",
    "max_drop_points": "<=",
}


def card_statement(record: dict[str, Any], statement: dict[str, Any], artifact: str) -> dict[str, str]:
    """The card's lines on the search: the budget, the machine, which file was measured and its figures."""
    teacher = statement["teacher"]
    threads = statement.get("num_threads", 1)
    measured = artifact
    if artifact.endswith(".pt"):
        measured += " (torchao int8 of student.pt; model.onnx is the same student's fp32 graph, not measured)"
    lines = {
        "budget": ", ".join(f"{k} {_BOUND[k]} {v:g}" for k, v in statement["budget"].items()) or "none",
        "machine": str(statement.get("machine_summary", "")),
        "search": f"trial {record['number']} of lightning-distill compress ({describe(record['settings'])})",
        "figures are for": measured,
        "validation accuracy": f"{record['val_accuracy']:.4f} (teacher {teacher['val_accuracy']:.4f})",
        "test accuracy": _fraction(record.get("test_accuracy"), teacher.get("test_accuracy")),
        "latency p50, batch 1": (
            f"{record['latency_ms_p50']:.4g} ms on the search's validation queries, {threads} thread(s), "
            f"{record['latency_ratio']:.3g}x faster than the fp32 teacher timed in the same turns"
        ),
        "size": f"{record['size_mb']:.4g} MB ({record['size_ratio']:.3g} of the teacher's {teacher['size_mb']:.4g} MB)",
        "meets the budget": "yes" if record.get("meets_budget") else "no",
    }
    if record.get("test_latency_ms_p50") is not None:
        lines["latency p50, batch 1, test split"] = (
            f"{record['test_latency_ms_p50']:.4g} ms, {record['test_latency_ratio']:.3g}x faster than the teacher"
        )
    return lines


def _fraction(value: float | None, teacher: float | None) -> str:
    if value is None:
        return "not measured"
    return f"{value:.4f}" + ("" if teacher is None else f" (teacher {teacher:.4f})")


def _measurement(record: dict[str, Any], statement: dict[str, Any]) -> dict[str, Any]:
    """The card's table row of the measured graph: test accuracy and test-split latency."""
    row: dict[str, Any] = {"num_threads": statement.get("num_threads", 1)}
    if record.get("test_accuracy") is not None:
        row["accuracy"] = record["test_accuracy"]
    latency = record.get("test_latency_ms_p50", record.get("latency_ms_p50"))
    if latency is not None:
        row["latency_ms_p50"] = latency
    return row
