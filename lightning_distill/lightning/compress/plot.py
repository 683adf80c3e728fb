"""``front.png``: validation accuracy against latency, marker area ~ size, the front joined, the budget drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import atomic_path


def plot_front(
    records: Sequence[dict[str, Any]], path: Path, limits: dict[str, float], teacher: dict[str, Any]
) -> Path:
    """Write the PNG atomically: every trial (front points filled, the others faint), the front as a line, the
    latency limit as a vertical line and the accuracy floor as a horizontal one.

    Args:
        records: Trial records (``val_accuracy``, ``latency_ms_p50``, ``size_mb``, ``on_front``).
        path: Where to write the PNG.
        limits: The budget's limits; ``latency_ms`` and ``latency_ratio`` become vertical lines,
            ``min_accuracy`` and ``max_drop_points`` horizontal ones.
        teacher: The teacher's ``val_accuracy`` and ``latency_ms_p50``, drawn as a star.
    """
    matplotlib = require("matplotlib", "front.png")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    largest = max([r["size_mb"] for r in records] + [teacher["size_mb"]])
    for on_front, alpha in ((False, 0.25), (True, 0.8)):
        chosen = [r for r in records if r["on_front"] == on_front]
        ax.scatter(
            [r["latency_ms_p50"] for r in chosen],
            [100 * r["val_accuracy"] for r in chosen],
            s=[30 + 600 * r["size_mb"] / largest for r in chosen],
            alpha=alpha,
            color="C0" if on_front else "C7",
            label="front" if on_front else "other trials",
        )
    front = sorted((r for r in records if r["on_front"]), key=lambda r: r["latency_ms_p50"])
    ax.plot([r["latency_ms_p50"] for r in front], [100 * r["val_accuracy"] for r in front], color="C0", lw=1)
    star = {"marker": "*", "s": 200, "color": "C3", "label": "teacher"}
    ax.scatter([teacher["latency_ms_p50"]], [100 * teacher["val_accuracy"]], **star)
    _budget_lines(ax, limits, teacher)
    ax.set_xscale("log")
    ax.set_xlabel("latency per query, batch 1, 1 thread, p50 (ms, log scale)")
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("compress front (marker area ~ size on disk)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path) as temporary:
            fig.savefig(temporary, format="png")
    finally:
        plt.close(fig)
    return path


def _budget_lines(ax: Any, limits: dict[str, float], teacher: dict[str, Any]) -> None:
    style = {"color": "C1", "ls": "--", "lw": 1}
    if "latency_ms" in limits:
        ax.axvline(limits["latency_ms"], label=f"latency_ms {limits['latency_ms']:g}", **style)
    if "latency_ratio" in limits:
        x = teacher["latency_ms_p50"] / limits["latency_ratio"]
        ax.axvline(x, label=f"latency_ratio {limits['latency_ratio']:g}x", **{**style, "ls": ":"})
    if "min_accuracy" in limits:
        ax.axhline(100 * limits["min_accuracy"], label=f"min_accuracy {limits['min_accuracy']:g}", **style)
    if "max_drop_points" in limits:
        y = 100 * teacher["val_accuracy"] - limits["max_drop_points"]
        ax.axhline(y, label=f"max_drop_points {limits['max_drop_points']:g}", **{**style, "ls": ":"})
