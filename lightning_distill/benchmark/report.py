"""Benchmark rows as JSON files and markdown tables."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_distill.benchmark.measure import BenchmarkResult

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
    """Write rows as a JSON list; with ``merge``, rows already in the file are kept unless a new row has their name."""
    path = Path(path)
    new = [_as_dict(r) for r in rows]
    old: list[dict] = []
    if merge and path.exists():
        old = [r for r in json.loads(path.read_text()) if r["name"] not in {n["name"] for n in new}]
    merged = old + new
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(merged, indent=2) + "\n")
    tmp.replace(path)
    return merged


def markdown_table(rows: Sequence[BenchmarkResult | dict[str, Any]]) -> str:
    """A markdown table of the standard columns (missing values print as ``-``)."""
    dicts = [_as_dict(r) for r in rows]
    lines = ["| " + " | ".join(title for _, title, _ in _COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    for row in dicts:
        cells = [fmt.format(row[key]) if row.get(key) is not None else "-" for key, _, fmt in _COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
