"""The accuracy-against-latency plot of a report: one labelled point per artifact, marker area ~ size on disk."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import atomic_path


def plot_accuracy_latency(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Write a PNG of accuracy (y) against batch-1 p50 latency (x, log scale); marker area proportional to size.

    The file is replaced atomically (:func:`lightning_distill.core.atomic.atomic_path`).

    Each point carries a number; the key beside the plot gives its artifact name, accuracy, latency and size (clustered
    points, such as an fp32 graph and its optimized copy, would bury direct labels under each other).
    """
    matplotlib = require("matplotlib", "the report plot")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        raise ValueError("no benchmark rows to plot")
    largest = max(r["size_mb"] for r in rows) or 1.0
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=120)
    for i, row in enumerate(rows, start=1):
        ax.scatter(
            row["latency_ms_p50"],
            100 * row["accuracy"],
            s=_area(row, largest),
            alpha=0.55,
            color=f"C{(i - 1) % 10}",
            label=f"{i}  {row['name']}: {100 * row['accuracy']:.2f}%, {row['latency_ms_p50']:.2f} ms, "
            f"{row['size_mb']:.1f} MB",
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
    ax.set_xlim(min(latencies) / 2, max(latencies) * 2)
    legend = ax.legend(
        loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False, title="marker area ~ size on disk"
    )
    for handle in legend.legend_handles:
        handle.set_sizes([40])
    fig.tight_layout()
    _place_numbers(fig, ax, rows)
    path = Path(path)
    try:
        with atomic_path(path) as temporary:  # the format is the target's: the temporary's name ends in .tmp
            fig.savefig(temporary, format=path.suffix.lstrip(".") or "png")
    finally:
        plt.close(fig)
    return path


def _area(row: dict[str, Any], largest: float) -> float:
    return 60 + 1500 * row["size_mb"] / largest


# Offsets (points) of a point's number from its centre, tried in turn until it covers no number placed before it.
_OFFSETS = [(0, 0), (0, 11), (0, -11), (11, 0), (-11, 0), (11, 11), (-11, 11), (11, -11), (-11, -11), (0, 22), (0, -22)]


def _place_numbers(fig: Any, ax: Any, rows: Sequence[dict[str, Any]]) -> None:
    renderer = fig.canvas.get_renderer()
    placed: list[Any] = []
    for i, row in enumerate(rows, start=1):
        point = (row["latency_ms_p50"], 100 * row["accuracy"])
        for n, (dx, dy) in enumerate(_OFFSETS):
            label = ax.annotate(
                str(i),
                point,
                textcoords="offset points",
                xytext=(dx, dy),
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold",
            )
            box = label.get_window_extent(renderer).expanded(1.3, 1.2)
            if n == len(_OFFSETS) - 1 or not any(_overlap_area(box, other) > 0 for other in placed):
                placed.append(box)
                break
            label.remove()


def _overlap_area(a: Any, b: Any) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, width) * max(0.0, height)
