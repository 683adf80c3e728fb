"""The text recipe's report: ``report.{json,md,png}`` with ratios against the fp32 teacher, the issue's target checked
for each candidate artifact, the options and the steps' results (``report_settings.json``)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from lightning_distill.recipes.engine import Recipe
from lightning_distill.recipes.text.settings import TextRecipeSettings

__all__ = ["EMB4", "INT8", "ONNX_ARTIFACTS", "PRE_OFFSET", "REFERENCE", "TARGET", "target_check", "write_text_report"]

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
# Issue 14's target for the final artifact against the fp32 PyTorch teacher (issue 6's was 8x, 1/6 and 1.5 points).
TARGET = {"speedup_at_least": 15.0, "size_fraction_at_most": 1 / 8, "accuracy_drop_at_most": 0.005}


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
            the first that meets :data:`TARGET` (the first when none does).
        machine: :func:`~lightning_distill.core.benchmark.machine_info` of the process that measured the rows; the
            report names it above the target, whose speed-up depends on it.

    Returns:
        The report's path and the target check of the final artifact (with every candidate's under ``candidates``).
    """
    from lightning_distill.core.benchmark import with_ratios, write_report

    rows = json.loads(rows_file.read_text())
    folder = write_report(rows, recipe.folder, title=settings.title, reference=REFERENCE)
    ratios = {r["name"]: r for r in with_ratios(rows, REFERENCE)}
    checks = [target_check(ratios[name]) for name in candidates]
    target = dict(next((c for c in checks if c["met"]), checks[0]))
    target["candidates"] = checks
    with (folder / "report.md").open("a") as markdown:
        markdown.write(_machine_markdown(machine) + _target_markdown(target) + _settings_markdown(recipe, settings))
    record = {"settings": asdict(settings), "machine": machine, "target": target, "steps": _step_results(recipe)}
    (folder / "report_settings.json").write_text(json.dumps(record, indent=2) + "\n")
    print((folder / "report.md").read_text())
    return {"report": str(folder / "report.md"), "target": target}


def target_check(row: dict[str, Any]) -> dict[str, Any]:
    """How a benchmark row (with its ratios against :data:`REFERENCE`) stands against :data:`TARGET`."""
    check = {
        "artifact": row["name"],
        "speedup": row["speedup_vs_reference"],
        "size_fraction": row["size_fraction_of_reference"],
        "accuracy_delta": row["accuracy_delta_vs_reference"],
        "speedup_met": row["speedup_vs_reference"] >= TARGET["speedup_at_least"],
        "size_met": row["size_fraction_of_reference"] <= TARGET["size_fraction_at_most"],
        "accuracy_met": row["accuracy_delta_vs_reference"] >= -TARGET["accuracy_drop_at_most"],
    }
    return {**check, "met": check["speedup_met"] and check["size_met"] and check["accuracy_met"]}


def _step_results(recipe: Recipe) -> dict[str, Any]:
    return {step: recipe.result(step) for step, _ in recipe.steps if recipe.is_done(step)}


def _machine_markdown(machine: dict[str, Any] | None) -> str:
    from lightning_distill.core.benchmark import machine_summary

    if machine is None:
        return "\nMeasured on: not recorded (a benchmark step from before the machine was recorded).\n"
    return f"\nMeasured on: {machine_summary(machine)}.\n"


def _target_markdown(target: dict[str, Any]) -> str:
    def mark(met: bool) -> str:
        return "met" if met else "**not met**"

    return (
        f"\nTarget of issue 14 for the final artifact, `{target['artifact']}`, against `{REFERENCE}`:\n\n"
        f"- speed-up at batch 1 (p50) >= {TARGET['speedup_at_least']:.0f}x: {target['speedup']:.2f}x, "
        f"{mark(target['speedup_met'])}\n"
        f"- size <= 1/{1 / TARGET['size_fraction_at_most']:.0f} of the teacher's: {target['size_fraction']:.3f} "
        f"({1 / max(target['size_fraction'], 1e-9):.2f}x smaller), {mark(target['size_met'])}\n"
        f"- accuracy within {100 * TARGET['accuracy_drop_at_most']:.1f} points: "
        f"{100 * target['accuracy_delta']:+.2f} points, {mark(target['accuracy_met'])}\n"
        "\nThe final artifact is the first of these candidates, most compressed first, that meets all three "
        "(the first when none does):\n\n"
        "| candidate | speed-up | size fraction | accuracy delta (points) | all met |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {c['artifact']} | {c['speedup']:.2f}x | {c['size_fraction']:.3f} | {100 * c['accuracy_delta']:+.2f} "
            f"| {'yes' if c['met'] else 'no'} |\n"
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
