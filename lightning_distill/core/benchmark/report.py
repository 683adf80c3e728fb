"""Benchmark rows as JSON files and markdown tables, each written atomically (:mod:`lightning_distill.core.atomic`)."""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import write_json, write_text
from lightning_distill.core.benchmark.measure import BenchmarkResult

_COLUMNS = (
    ("name", "artifact", "{}"),
    ("accuracy", "accuracy", "{:.4f}"),
    ("params", "params", "{:,}"),
    ("size_mb", "size (MB)", "{:.3f}"),
    ("latency_ms_mean", "latency ms mean", "{:.3f}"),
    ("latency_ms_std", "std", "{:.3f}"),
    ("latency_ms_p50", "p50", "{:.3f}"),
    ("latency_ms_p95", "p95", "{:.3f}"),
    ("throughput_per_s", "throughput/s", "{:,.0f}"),
)


def _as_dict(row: BenchmarkResult | dict[str, Any]) -> dict[str, Any]:
    return row.to_dict() if isinstance(row, BenchmarkResult) else dict(row)


def write_rows(rows: Sequence[BenchmarkResult | dict[str, Any]], path: str | Path, merge: bool = True) -> list[dict]:
    """Write rows as a JSON list; with ``merge``, rows already in the file are kept unless a new row has their name.

    The file is replaced atomically: a write that fails (a full disk) keeps the previous rows.

    Raises:
        ValueError: with ``merge``, the file there is not a JSON list of rows.
    """
    path = Path(path)
    new = [_as_dict(r) for r in rows]
    old: list[dict] = []
    if merge and path.exists():
        old = [r for r in _read_rows(path) if r["name"] not in {n["name"] for n in new}]
    merged = old + new
    write_json(path, merged)
    return merged


def _read_rows(path: Path) -> list[dict]:
    try:
        rows = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        rows = error
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r for r in rows):
        raise ValueError(
            f"{path} holds no JSON list of benchmark rows ({rows if isinstance(rows, Exception) else type(rows)}), so "
            "new rows cannot be merged into it; move it away or delete it and measure again"
        )
    return rows


def markdown_table(rows: Sequence[BenchmarkResult | dict[str, Any]]) -> str:
    """A markdown table of the standard columns (missing values print as ``-``)."""
    dicts = [_as_dict(r) for r in rows]
    lines = ["| " + " | ".join(title for _, title, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in dicts:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def with_ratios(rows: Sequence[BenchmarkResult | dict[str, Any]], reference: str) -> list[dict[str, Any]]:
    """Rows with ``speedup_vs_<ref>`` (p50 latency), ``size_ratio_vs_<ref>`` and ``accuracy_delta_vs_<ref>`` added."""
    dicts = [_as_dict(r) for r in rows]
    base = next((r for r in dicts if r["name"] == reference), None)
    if base is None:
        raise ValueError(f"reference row {reference!r} is not among {[r['name'] for r in dicts]}")
    for row in dicts:
        row["speedup_vs_reference"] = round(base["latency_ms_p50"] / row["latency_ms_p50"], 3)
        row["size_fraction_of_reference"] = round(row["size_mb"] / base["size_mb"], 4)
        row["accuracy_delta_vs_reference"] = round(row["accuracy"] - base["accuracy"], 4)
        row["reference"] = reference
    return dicts


def report_markdown(rows: Sequence[dict[str, Any]], title: str) -> str:
    """A report page: the standard table, then the ratios against the reference row where present."""
    lines = [f"# {title}", "", markdown_table(rows), ""]
    if rows and "reference" in rows[0]:
        lines += [
            f"Ratios against `{rows[0]['reference']}`:",
            "",
            "| artifact | speed-up (p50) | size fraction | accuracy delta (points) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['name']} | {r['speedup_vs_reference']:.2f}x | {r['size_fraction_of_reference']:.3f} | "
            f"{100 * r['accuracy_delta_vs_reference']:+.2f} |"
            for r in rows
        ]
        lines.append("")
    threads = sorted({r.get("num_threads") for r in rows if r.get("num_threads")})
    lines.append(
        f"Latency: batch 1, {threads} intra-op thread(s); throughput at batch {rows[0].get('throughput_batch_size')}."
    )
    return "\n".join(lines) + "\n"


def write_report(
    rows: Sequence[BenchmarkResult | dict[str, Any]], folder: str | Path, title: str, reference: str, notes: str = ""
) -> Path:
    """``report.json``, ``report.md`` and ``report.png`` in ``folder``; returns the folder.

    Each file is replaced atomically: a write that fails (a full disk) keeps the previous one. Without matplotlib (the
    ``[plot]`` extra) the plot is left out with a warning that says so; the tables are written.

    Args:
        notes: Markdown added at the end of ``report.md`` (targets, settings).
    """
    from lightning_distill.core.benchmark.plot import plot_accuracy_latency

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dicts = with_ratios(rows, reference)
    write_json(folder / "report.json", dicts)
    write_text(folder / "report.md", report_markdown(dicts, title) + notes)
    try:
        plot_accuracy_latency(dicts, folder / "report.png", title=title)
    except ImportError as error:
        warnings.warn(f"report.png was not written: {error}", stacklevel=2)
    return folder
