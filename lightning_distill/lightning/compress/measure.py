"""Latency as the search relies on it: batch 1, one thread, a fixed query sample, candidate and teacher in turns.

Timing a candidate alone and comparing it with a teacher timed minutes earlier mixes the candidate's speed with the
machine's drift (other processes, frequency changes). Here both are timed in the same process, in interleaved turns
(candidate, teacher, teacher, candidate, ...), on the same queries, so a slow spell of the machine slows both; the
speed-up is taken from figures of one measurement. The turns are :func:`core.benchmark.measure.interleaved_latency`'s.
"""

from __future__ import annotations

from typing import Any

NUM_THREADS = 1  # threads of every latency the search measures (interleaved_latency's default)


def query_sample(datamodule: Any, split: str, size: int | None) -> list[Any]:
    """The first ``size`` raw examples of ``split`` (all when None), each a batch of one: the same every trial."""
    inputs, _ = datamodule.benchmark_data(split)
    count = len(inputs) if size is None else min(size, len(inputs))
    return [inputs[i : i + 1] for i in range(count)]


def drift_pct(first: float, second: float) -> float:
    """How far two measurements of one artifact differ, in percent of the smaller one."""
    return round(100 * abs(first - second) / max(min(first, second), 1e-12), 2)
