"""The text recipe's report: ``report.{json,md,png}`` with ratios against the fp32 teacher, each candidate final
artifact checked against the targets the user gave (``--target-*``), the options and the steps' results
(``report_settings.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import write_json
from lightning_distill.core.benchmark.portable import relative_paths
from lightning_distill.recipes.engine import Recipe
from lightning_distill.recipes.text.settings import TextRecipeSettings

__all__ = ["EMB4", "INT8", "ONNX_ARTIFACTS", "PRE_OFFSET", "REFERENCE", "target_check", "write_text_report"]

REFERENCE = "teacher fp32"
INT8 = "ONNX int8 (ORT dynamic)"
EMB4 = "ONNX int8 + 4-bit embeddings"
PRE_OFFSET = "(before offset)"
# The export step's result keys and the report's row labels of the final student's ONNX graphs.
ONNX_ARTIFACTS = (
    ("onnx", "ONNX fp32"),
    ("onnx_optimized", "ONNX fp32 (ORT optimized)"),
    ("onnx_int8", INT8),
    ("onnx_int8_emb4", EMB4),
)


def write_text_report(
    recipe: Recipe,
    settings: TextRecipeSettings,
    rows_file: Path,
    candidates: list[str],
    machine: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Write the report of ``rows_file``'s benchmark rows under ``recipe.folder`` and print its markdown.

    Args:
        candidates: Row names of the candidates for the final artifact, most compressed first: the final artifact is
            the first that meets every target of ``settings`` (the first when none does, or no target is given).
        machine: :func:`~lightning_distill.core.benchmark.machine_info` of the process that measured the rows; the
            report names it above the candidates, whose speed-ups depend on it.

    Returns:
        The report's path and the check of the final artifact (with every candidate's under ``candidates``).
    """
    from lightning_distill.core.benchmark import with_ratios, write_report

    rows = json.loads(rows_file.read_text())
    ratios = {r["name"]: r for r in with_ratios(rows, REFERENCE)}
    checks = [target_check(ratios[name], settings) for name in candidates]
    target = dict(next((c for c in checks if c["met"]), checks[0]))
    target["candidates"] = checks
    notes = _machine_markdown(machine) + _target_markdown(target, settings) + _settings_markdown(recipe, settings)
    folder = write_report(rows, recipe.folder, title=settings.title, reference=REFERENCE, notes=notes)
    record = {"settings": asdict(settings), "machine": machine, "target": target, "steps": _step_results(recipe)}
    # Relative to the folder the recipe ran from, so the record can be kept (benchmarks/results/) and read anywhere.
    write_json(folder / "report_settings.json", relative_paths(record, Path.cwd()))
    print((folder / "report.md").read_text())
    return {"report": str(folder / "report.md"), "target": target}


def target_check(row: dict[str, Any], settings: TextRecipeSettings) -> dict[str, Any]:
    """How a benchmark row (with its ratios against :data:`REFERENCE`) stands against the targets of ``settings``.

    Returns:
        The row's ``speedup``, ``size_fraction`` and ``accuracy_delta``; ``speedup_met``, ``size_met`` and
        ``accuracy_met`` for each target given (absent for one not given); ``met``: every given target met (True
        when none is given).
    """
    check: dict[str, Any] = {
        "artifact": row["name"],
        "speedup": row["speedup_vs_reference"],
        "size_fraction": row["size_fraction_of_reference"],
        "accuracy_delta": row["accuracy_delta_vs_reference"],
    }
    if settings.target_speedup is not None:
        check["speedup_met"] = check["speedup"] >= settings.target_speedup
    if settings.target_size_fraction is not None:
        check["size_met"] = check["size_fraction"] <= settings.target_size_fraction
    if settings.target_accuracy_drop is not None:
        check["accuracy_met"] = 100 * check["accuracy_delta"] >= -settings.target_accuracy_drop
    return {**check, "met": all(check[key] for key in _MET_KEYS if key in check)}


_MET_KEYS = ("speedup_met", "size_met", "accuracy_met")


def _step_results(recipe: Recipe) -> dict[str, Any]:
    return {step: recipe.result(step) for step, _ in recipe.steps if recipe.is_done(step)}


def _machine_markdown(machine: dict[str, Any] | None) -> str:
    from lightning_distill.core.benchmark import machine_summary

    if machine is None:
        return "\nMeasured on: not recorded (a benchmark step from before the machine was recorded).\n"
    return f"\nMeasured on: {machine_summary(machine)}.\n"


def _target_markdown(target: dict[str, Any], settings: TextRecipeSettings) -> str:
    def mark(key: str) -> str:
        return "met" if target[key] else "**not met**"

    lines = []
    if settings.target_speedup is not None:
        lines.append(
            f"- speed-up at batch 1 (p50) >= {settings.target_speedup:g}x: {target['speedup']:.2f}x, "
            f"{mark('speedup_met')}"
        )
    if settings.target_size_fraction is not None:
        lines.append(
            f"- size <= {settings.target_size_fraction:g} of the teacher's: {target['size_fraction']:.3f} "
            f"({1 / max(target['size_fraction'], 1e-9):.2f}x smaller), {mark('size_met')}"
        )
    if settings.target_accuracy_drop is not None:
        lines.append(
            f"- accuracy within {settings.target_accuracy_drop:g} points: {100 * target['accuracy_delta']:+.2f} "
            f"points, {mark('accuracy_met')}"
        )
    if lines:
        head = f"\nTargets for the final artifact, `{target['artifact']}`, against `{REFERENCE}`:\n\n"
        rule = "the first candidate, most compressed first, that meets every target (the first when none does)"
    else:
        head = "\nNo target given (`--target-speedup`, `--target-size-fraction`, `--target-accuracy-drop`).\n"
        rule = f"the first of these candidates, the most compressed: `{target['artifact']}`"
    return (
        head + "".join(line + "\n" for line in lines) + f"\nThe final artifact is {rule}:\n\n"
        "| candidate | speed-up | size fraction | accuracy delta (points) | all targets met |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {c['artifact']} | {c['speedup']:.2f}x | {c['size_fraction']:.3f} | {100 * c['accuracy_delta']:+.2f} "
            f"| {('yes' if c['met'] else 'no') if lines else '-'} |\n"
            for c in target.get("candidates", [])
        )
    )


def _settings_markdown(recipe: Recipe, settings: TextRecipeSettings) -> str:
    lines = ["", "Options (also in `report_settings.json`):", ""]
    if settings.command:
        lines += ["```", " ".join(settings.command), "```", ""]
    for key, value in asdict(settings).items():
        if key != "command":
            lines.append(f"- `{key}`: `{json.dumps(value)}`")
    seconds = {}
    for step, _ in recipe.steps:
        done = recipe.step_dir(step) / "done.json"
        if done.is_file():
            seconds[step] = json.loads(done.read_text())["seconds"]
    if seconds:
        lines += ["", "Step wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())]
    return "\n".join(lines) + "\n"
