"""Pruning schedules written as data: when to prune and to which sparsity.

A schedule prunes at its *pruning points* ``start, start + frequency, ..., end`` (``end`` is always one of them),
counted in epochs or optimizer steps. Between two points the model trains with the units pruned so far, so every
schedule with several points is iterative pruning with fine-tuning in between.

The sparsity reached at point ``t`` follows Zhu and Gupta, "To prune, or not to prune: exploring the efficacy of
pruning for model compression" (2017), with progress ``p = (t - t0) / (end - t0)`` where ``t0 = start - frequency``
is a virtual point one step before ``start`` (so no pruning point is spent on the initial sparsity):

- ``constant``: ``s(p) = final_sparsity`` (one shot at ``start``; later points change nothing)
- ``linear``:   ``s(p) = initial + (final - initial) * p``
- ``cubic``:    ``s(p) = final + (initial - final) * (1 - p) ** 3`` (Zhu and Gupta: prune fast while the network is
  redundant, slowly near the target)

Every schedule reaches ``final_sparsity`` exactly at ``end``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ScheduleShape = Literal["constant", "linear", "cubic"]
ScheduleUnit = Literal["epoch", "step"]
_SHAPES = ("constant", "linear", "cubic")
_UNITS = ("epoch", "step")


@dataclass(frozen=True)
class PruningSchedule:
    """When to prune and how much.

    Examples:
        One shot to 50% at the start of epoch 2: ``PruningSchedule(0.5, start=2)``.
        Five steps to 80%, one epoch of fine-tuning after each: ``PruningSchedule(0.8, start=0, end=4,
        shape="linear")`` prunes to 16, 32, 48, 64 and 80% at epochs 0..4.
        Zhu and Gupta over optimizer steps 0..1000 every 100 steps: ``PruningSchedule(0.9, start=0, end=1000,
        unit="step", frequency=100, shape="cubic")``.

    Args:
        final_sparsity: Fraction of weights (or units) pruned at ``end``, in [0, 1).
        start: First pruning point (epoch or optimizer step, counted from 0).
        end: Last pruning point, where ``final_sparsity`` is reached; ``None`` means ``start`` (one shot).
        unit: Whether points count epochs (pruning at the start of the epoch) or optimizer steps (pruning before the
            step).
        frequency: Epochs or steps between pruning points.
        shape: How sparsity grows from ``initial_sparsity`` to ``final_sparsity``.
        initial_sparsity: Sparsity of the virtual point before ``start``, in [0, ``final_sparsity``].
    """

    final_sparsity: float
    start: int = 0
    end: int | None = None
    unit: ScheduleUnit = "epoch"
    frequency: int = 1
    shape: ScheduleShape = "cubic"
    initial_sparsity: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.final_sparsity < 1.0:
            raise ValueError(f"final_sparsity must be in [0, 1), got {self.final_sparsity}")
        if not 0.0 <= self.initial_sparsity <= self.final_sparsity:
            raise ValueError(
                f"initial_sparsity must be in [0, final_sparsity={self.final_sparsity}], got {self.initial_sparsity}"
            )
        if self.start < 0:
            raise ValueError(f"start must be >= 0, got {self.start}")
        if self.end is not None and self.end < self.start:
            raise ValueError(f"end must be >= start={self.start}, got end={self.end}")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {self.frequency}")
        if self.unit not in _UNITS:
            raise ValueError(f"unit must be one of {_UNITS}, got {self.unit!r}")
        if self.shape not in _SHAPES:
            raise ValueError(f"schedule must be one of {_SHAPES}, got {self.shape!r}")

    @property
    def last(self) -> int:
        """The last pruning point (``end``, or ``start`` for a one-shot schedule)."""
        return self.start if self.end is None else self.end

    def points(self) -> list[int]:
        """All pruning points in order."""
        points = list(range(self.start, self.last + 1, self.frequency))
        if points[-1] != self.last:
            points.append(self.last)
        return points

    def point_at(self, t: int) -> int | None:
        """The latest pruning point at or before ``t``, or ``None`` before ``start``."""
        if t < self.start:
            return None
        if t >= self.last:
            return self.last
        return self.start + (t - self.start) // self.frequency * self.frequency

    def sparsity_at(self, t: int) -> float:
        """Target sparsity once the pruning point at or before ``t`` has run (0 before ``start``)."""
        point = self.point_at(t)
        if point is None:
            return 0.0
        if self.shape == "constant" or point >= self.last:
            return self.final_sparsity
        virtual_start = self.start - self.frequency
        progress = (point - virtual_start) / (self.last - virtual_start)
        initial, final = self.initial_sparsity, self.final_sparsity
        if self.shape == "linear":
            return initial + (final - initial) * progress
        return final + (initial - final) * (1.0 - progress) ** 3
