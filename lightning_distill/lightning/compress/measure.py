"""Latency as the search relies on it: batch 1, one thread, a fixed query sample, candidate and teacher in turns.

Timing a candidate alone and comparing it with a teacher timed minutes earlier mixes the candidate's speed with the
machine's drift (other processes, frequency changes). Here both are timed in the same process, in interleaved turns
(candidate, teacher, teacher, candidate, ...), on the same queries, so a slow spell of the machine slows both; the
speed-up is taken from figures of one measurement. The timings themselves are :func:`core.benchmark.measure`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lightning_distill.core.benchmark.measure import PredictFn, latency_ms, summarize_latency, torch_threads

NUM_THREADS = 1


def query_sample(datamodule: Any, split: str, size: int | None) -> list[Any]:
    """The first ``size`` raw examples of ``split`` (all when None), each a batch of one: the same every trial."""
    inputs, _ = datamodule.benchmark_data(split)
    count = len(inputs) if size is None else min(size, len(inputs))
    return [inputs[i : i + 1] for i in range(count)]


def interleaved_latency(
    predictors: Mapping[str, PredictFn], queries: list[Any], turns: int, warmup: int = 5
) -> dict[str, dict[str, float]]:
    """Batch-1 latency of each predictor over ``queries``, timed in ``turns`` turns whose order alternates.

    Args:
        predictors: Raw inputs -> logits, by name (e.g. ``candidate`` and ``teacher``).
        queries: Batch-1 raw inputs; every predictor answers each of them once per turn.
        turns: Turns per predictor; the order of the predictors is reversed every other turn.
        warmup: Untimed calls of each predictor before the first turn.

    Returns:
        By name: mean, std, p50 and p95 in milliseconds (:func:`summarize_latency`) and ``num_threads``.
    """
    if not queries:
        raise ValueError("no queries to time: the query sample is empty")
    names = list(predictors)
    timings: dict[str, list[float]] = {name: [] for name in names}
    with torch_threads(NUM_THREADS), torch.inference_mode():
        for name in names:
            latency_ms(predictors[name], queries[0], warmup=warmup, iterations=0)
        for turn in range(turns):
            for name in names if turn % 2 == 0 else reversed(names):
                for query in queries:
                    timings[name] += latency_ms(predictors[name], query, warmup=0, iterations=1)
    return {
        name: {**{k: round(v, 5) for k, v in summarize_latency(timings[name]).items()}, "num_threads": NUM_THREADS}
        for name in names
    }


def drift_pct(first: float, second: float) -> float:
    """How far two measurements of one artifact differ, in percent of the smaller one."""
    return round(100 * abs(first - second) / max(min(first, second), 1e-12), 2)
