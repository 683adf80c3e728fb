"""The front of a search: every completed trial as a record, the non-dominated set, front.json and front.md."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import write_json, write_text
from lightning_distill.lightning.compress.budget import budget_misses, describe, meets
from lightning_distill.lightning.compress.config import Budget


def trial_records(trials: Sequence[Any], budget: Budget, teacher_accuracy: float) -> list[dict[str, Any]]:
    """One record per completed trial (Optuna ``FrozenTrial``s): settings, figures, budget misses, artifact.

    The misses are taken against ``budget`` now, so a finished search rerun with another budget chooses again
    without running a trial.
    """
    records = []
    for trial in trials:
        attrs = trial.user_attrs
        if "figures" not in attrs:
            continue
        misses = budget_misses(budget, attrs["figures"], teacher_accuracy)
        records.append(
            {
                "number": trial.number,
                "settings": attrs["settings"],
                **attrs["figures"],
                "test_accuracy": None,
                "budget_misses": misses,
                "meets_budget": meets(misses),
                "artifact": attrs["artifact"],
                "on_front": False,
            }
        )
    return records


def dominates(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether ``a`` is at least as good as ``b`` on accuracy (up), latency and size (down), and better on one."""
    no_worse = (
        a["val_accuracy"] >= b["val_accuracy"]
        and a["latency_ms_p50"] <= b["latency_ms_p50"]
        and a["size_mb"] <= b["size_mb"]
    )
    better = (
        a["val_accuracy"] > b["val_accuracy"]
        or a["latency_ms_p50"] < b["latency_ms_p50"]
        or a["size_mb"] < b["size_mb"]
    )
    return no_worse and better


def non_dominated(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records no other record dominates, by increasing latency."""
    front = [r for r in records if not any(dominates(other, r) for other in records if other is not r)]
    return sorted(front, key=lambda r: (r["latency_ms_p50"], -r["val_accuracy"]))


def choose(records: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest validation accuracy among the records that meet the budget (ties: the lower latency)."""
    feasible = [r for r in records if r["meets_budget"]]
    return max(feasible, key=lambda r: (r["val_accuracy"], -r["latency_ms_p50"]), default=None)


def write_front_json(path: Path, summary: dict[str, Any]) -> Path:
    """``front.json``: the budget, machine, teacher, every trial, the front's trial numbers and the chosen one."""
    return write_json(path, summary)


def front_markdown(summary: dict[str, Any]) -> str:
    """``front.md``: the teacher's figures, then one row per front point (the chosen one marked) and the message."""
    teacher = summary["teacher"]
    lines = [
        "# compress front",
        "",
        f"Machine: {summary['machine_summary']}; latency: batch 1, {summary['num_threads']} thread, p50 over "
        f"{summary['query_sample']} validation queries, interleaved with the teacher.",
        f"Budget: {summary['budget'] or 'none'}.",
        f"Teacher (fp32 ONNX): val acc {100 * teacher['val_accuracy']:.2f}%, test acc "
        f"{_percent(teacher.get('test_accuracy'))}, size {teacher['size_mb']:.4g} MB.",
        "",
        "| trial | settings | val acc | test acc | p50 (ms) | x faster | size MB | of teacher size | budget |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for record in summary["trials"]:
        if not record["on_front"]:
            continue
        mark = " (chosen)" if record["number"] == summary["chosen"] else ""
        lines.append(
            f"| {record['number']}{mark} | {describe(record['settings'])} | {100 * record['val_accuracy']:.2f} | "
            f"{_percent(record['test_accuracy'])} | {record['latency_ms_p50']:.4g} | {record['latency_ratio']:.3g} | "
            f"{record['size_mb']:.4g} | {record['size_ratio']:.3g} | "
            f"{'meets' if record['meets_budget'] else 'misses'} |"
        )
    lines += ["", summary["message"], ""]
    return "\n".join(lines)


def write_front_markdown(path: Path, summary: dict[str, Any]) -> Path:
    """Write :func:`front_markdown` atomically."""
    return write_text(path, front_markdown(summary))


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}"
