"""How far a trial's figures miss each limit of the budget, and the closest points when nothing meets it."""

from __future__ import annotations

from typing import Any

from lightning_distill.lightning.compress.config import Budget

# Each limit's unit in messages, and the figure it bounds.
_UNITS = {
    "latency_ms": "ms",
    "latency_ratio": "x",
    "size_mb": "MB",
    "size_ratio": "",
    "min_accuracy": "points",
    "max_drop_points": "points",
}


def budget_misses(budget: Budget, figures: dict[str, float], teacher_accuracy: float) -> dict[str, float]:
    """By limit: how far ``figures`` miss it (> 0) or how much room they leave (<= 0), in the limit's unit.

    Args:
        budget: The limits.
        figures: ``val_accuracy`` (fraction), ``latency_ms_p50``, ``latency_ratio`` (x faster than the teacher),
            ``size_mb`` and ``size_ratio`` (of the teacher's size).
        teacher_accuracy: The teacher's validation accuracy (fraction), for ``max_drop_points``.
    """
    accuracy = figures["val_accuracy"]
    miss = {
        "latency_ms": lambda limit: figures["latency_ms_p50"] - limit,
        "latency_ratio": lambda limit: limit - figures["latency_ratio"],
        "size_mb": lambda limit: figures["size_mb"] - limit,
        "size_ratio": lambda limit: figures["size_ratio"] - limit,
        "min_accuracy": lambda limit: 100 * (limit - accuracy),
        "max_drop_points": lambda limit: 100 * (teacher_accuracy - accuracy) - limit,
    }
    return {name: round(miss[name](limit), 6) for name, limit in budget.limits().items()}


def meets(misses: dict[str, float]) -> bool:
    """Whether no limit is missed."""
    return all(value <= 0 for value in misses.values())


def _relative_miss(budget: Budget, misses: dict[str, float]) -> float:
    """The sum of the misses, each relative to its limit (accuracy limits: per point), for ranking near misses."""
    limits = budget.limits()
    total = 0.0
    for name, value in misses.items():
        scale = 1.0 if name in ("min_accuracy", "max_drop_points") else limits[name]
        total += max(value, 0.0) / scale
    return total


def closest_message(budget: Budget, records: list[dict[str, Any]], count: int = 3) -> str:
    """A message naming the ``count`` trials that come closest to the budget and by how far each misses each limit."""
    limits = ", ".join(f"{name} {value:g}" for name, value in budget.limits().items())
    if not records:
        return f"no trial completed, so none meets the budget ({limits})"
    ranked = sorted(records, key=lambda r: _relative_miss(budget, r["budget_misses"]))[:count]
    lines = [f"no trial meets the budget ({limits}); the closest:"]
    for record in ranked:
        missed = "; ".join(
            f"{name} missed by {value:.4g}{' ' + _UNITS[name] if _UNITS[name] else ''}"
            for name, value in record["budget_misses"].items()
            if value > 0
        )
        lines.append(
            f"  trial {record['number']} ({describe(record['settings'])}): "
            f"val acc {100 * record['val_accuracy']:.2f}%, "
            f"p50 {record['latency_ms_p50']:.4g} ms, {record['size_mb']:.4g} MB; {missed}"
        )
    lines.append("loosen the budget, or widen the search space or the trial count")
    return "\n".join(lines)


def describe(settings: dict[str, Any]) -> str:
    """``name=value`` pairs of a trial's settings, numbers to 4 significant digits."""
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in settings.items())
