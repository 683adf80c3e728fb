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
    fig, ax = plt.subplots(figsize=(10, 6.5), dpi=120)
    for i, row in enumerate(rows):
        ax.scatter(row["latency_ms_p50"], 100 * row["accuracy"], s=_area(row, largest), alpha=0.55, color=f"C{i % 10}")
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
    _place_labels(fig, ax, rows, largest)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


# Label offsets (points) tried in turn until a label overlaps no label placed before it.
_OFFSETS = [
    (8, 6),
    (8, -22),
    (-8, 6),
    (-8, -22),
    (16, 26),
    (16, -42),
    (-16, 26),
    (-16, -42),
    (24, 48),
    (24, -64),
    (-24, 48),
    (-24, -64),
]


def _area(row: dict[str, Any], largest: float) -> float:
    return 60 + 1500 * row["size_mb"] / largest


def _place_labels(fig: Any, ax: Any, rows: Sequence[dict[str, Any]], largest: float) -> None:
    """Annotate each point with its name and size, moving a label around its point while it would cover another
    label or another point's marker."""
    from matplotlib.transforms import Bbox

    renderer = fig.canvas.get_renderer()
    markers = {}
    for row in rows:
        x, y = ax.transData.transform((row["latency_ms_p50"], 100 * row["accuracy"]))
        radius = (_area(row, largest) / 3.14159) ** 0.5 * fig.dpi / 72
        markers[row["name"]] = Bbox.from_extents(x - radius, y - radius, x + radius, y + radius)
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    for row in sorted(rows, key=lambda r: (r["latency_ms_p50"], -r["accuracy"])):
        point = (row["latency_ms_p50"], 100 * row["accuracy"])
        obstacles = placed + [box for name, box in markers.items() if name != row["name"]]
        best = None
        for dx, dy in _OFFSETS:
            label = ax.annotate(
                f"{row['name']}\n{row['size_mb']:.2f} MB",
                point,
                textcoords="offset points",
                xytext=(dx, dy),
                ha="left" if dx > 0 else "right",
                fontsize=8,
                arrowprops={"arrowstyle": "-", "lw": 0.6, "alpha": 0.6} if abs(dy) > 22 else None,
            )
            box = label.get_window_extent(renderer).expanded(1.02, 1.1)
            outside = box.width * box.height - _overlap_area(box, frame)
            overlap = outside + sum(_overlap_area(box, other) for other in obstacles)
            if best is not None:
                if overlap >= best[0]:
                    label.remove()
                    continue
                best[1].remove()
            best = (overlap, label, box)
            if overlap == 0:
                break
        placed.append(best[2])


def _overlap_area(a: Any, b: Any) -> float:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return max(0.0, width) * max(0.0, height)
