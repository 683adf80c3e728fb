"""The accuracy-against-latency plot of a report: one labelled point per artifact, marker area ~ size on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any


def plot_accuracy_latency(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write a PNG of accuracy (y) against batch-1 p50 latency (x, log scale); marker area proportional to size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no benchmark rows to plot")
    largest = max(r["size_mb"] for r in rows) or 1.0
    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    for i, row in enumerate(rows):
        area = 60 + 1500 * row["size_mb"] / largest
        ax.scatter(row["latency_ms_p50"], 100 * row["accuracy"], s=area, alpha=0.55, color=f"C{i % 10}")
        ax.annotate(
            f"{row['name']}\n{row['size_mb']:.2f} MB",
            (row["latency_ms_p50"], 100 * row["accuracy"]),
            textcoords="offset points",
            xytext=(8, 6),
            fontsize=8,
        )
    ax.set_xscale("log")
    ax.set_xlabel("latency per query, batch 1, p50 (ms, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title or "accuracy against latency (marker area ~ size on disk)")
    ax.grid(True, which="both", alpha=0.3)
    accuracies = [100 * r["accuracy"] for r in rows]
    spread = max(accuracies) - min(accuracies)
    ax.set_ylim(min(accuracies) - max(1.0, 0.3 * spread), max(accuracies) + max(1.0, 0.3 * spread))
    latencies = [r["latency_ms_p50"] for r in rows]
    ax.set_xlim(min(latencies) / 2, max(latencies) * 3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
