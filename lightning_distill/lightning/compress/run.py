"""``compress(config)``: check the space, fit the teacher once, search, then write the front and the chosen artifact."""

from __future__ import annotations

import contextlib
import shutil
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_distill.core.atomic import write_text
from lightning_distill.core.benchmark.machine import machine_info, machine_summary
from lightning_distill.core.benchmark.measure import accuracy, interleaved_latency, torch_threads
from lightning_distill.lightning.compress.budget import closest_message, describe
from lightning_distill.lightning.compress.candidate import load_predictor
from lightning_distill.lightning.compress.chosen import write_chosen
from lightning_distill.lightning.compress.config import CompressConfig
from lightning_distill.lightning.compress.front import (
    choose,
    non_dominated,
    trial_records,
    write_front_json,
    write_front_markdown,
)
from lightning_distill.lightning.compress.measure import NUM_THREADS, drift_pct, query_sample
from lightning_distill.lightning.compress.plot import plot_front
from lightning_distill.lightning.compress.pruned_start import check_student_checkpoint
from lightning_distill.lightning.compress.quiet import quiet_lightning
from lightning_distill.lightning.compress.search import (
    SearchContext,
    TrialCallback,
    TrialState,
    build_cli,
    open_study,
    run_search,
    trial_config,
)
from lightning_distill.lightning.compress.space import check_search_space
from lightning_distill.lightning.compress.teacher import export_teacher, fit_teacher, teacher_spec

# Turns of the chosen artifact's final measurement against the teacher, on the whole test split.
_FINAL_TURNS = 2


@dataclass(frozen=True)
class CompressResult:
    """What a search found.

    Args:
        output: The output folder (``front.json``, ``front.md``, ``front.png``, ``chosen/``).
        records: Every completed trial (see ``front.json``).
        chosen: The chosen trial's record, or None when no trial meets the budget.
        chosen_artifact: The chosen artifact's path under ``chosen/``, or None.
        message: What was chosen, or which trials come closest to the budget and by how far they miss it.
    """

    output: Path
    records: list[dict[str, Any]]
    chosen: dict[str, Any] | None
    chosen_artifact: Path | None
    message: str

    @property
    def front(self) -> list[dict[str, Any]]:
        """The non-dominated records, by increasing latency."""
        return sorted((r for r in self.records if r["on_front"]), key=lambda r: r["latency_ms_p50"])


def compress(config: CompressConfig, callbacks: Sequence[TrialCallback] = ()) -> CompressResult:
    """Search students of ``config.family`` distilled from the teacher for the best one under ``config.budget``.

    A search space naming a dimension the family does not provide, or a value it does not allow, is refused before
    any training. A budget no trial meets is no error: the result's message names the closest trials, and the front
    files are written all the same.

    Args:
        config: The search (see :class:`CompressConfig`).
        callbacks: Optuna callbacks called as ``callback(study, frozen_trial)`` after each trial.

    Raises:
        CompressConfigError: the config, the teacher config or the search space is wrong (before any training).
    """
    family = check_search_space(config.family, config.search_space, config.student)
    check_student_checkpoint(config)
    spec = teacher_spec(config)
    threads = torch_threads(config.fit_threads) if config.fit_threads else contextlib.nullcontext()
    with quiet_lightning(), threads:  # the latency measurements set one thread themselves
        teacher = fit_teacher(config, spec)
        context = _context(config, family, teacher)
        study = open_study(config)
        run_search(context, study, callbacks)
        return _finish(context, study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def _context(config: CompressConfig, family: Any, teacher: Any) -> SearchContext:
    """The teacher loaded from its checkpoint (through a trial config at the family's defaults) and measured."""
    folder = config.output / "teacher"
    folder.mkdir(parents=True, exist_ok=True)
    probe = SearchContext(config, family, teacher, {}, None, [])
    path = write_text(folder / "probe.yaml", yaml.safe_dump(trial_config(probe, family.values({}), folder)))
    cli = build_cli(path, run=False)
    datamodule = cli.datamodule
    datamodule.prepare_data()
    datamodule.setup("fit")
    figures = export_teacher(cli.model.teacher, datamodule, folder)
    return SearchContext(
        config=config,
        family=family,
        teacher=teacher,
        teacher_figures=figures,
        teacher_predict=load_predictor(figures["artifact"], datamodule.encode),
        queries=query_sample(datamodule, "val", config.query_sample),
        datamodule=datamodule,
    )


def _test_accuracy(artifact: str, datamodule: Any) -> float:
    inputs, labels = datamodule.benchmark_data("test")
    return accuracy(load_predictor(artifact, datamodule.encode), inputs, labels)


def _finish(context: SearchContext, trials: Sequence[Any]) -> CompressResult:
    config = context.config
    datamodule = context.datamodule
    datamodule.setup("test")
    records = trial_records(trials, config.budget, context.teacher_figures["val_accuracy"])
    for record in non_dominated(records):
        record["on_front"] = True
        record["test_accuracy"] = _test_accuracy(record["artifact"], datamodule)
    teacher = dict(context.teacher_figures)
    teacher["test_accuracy"] = _test_accuracy(teacher["artifact"], datamodule)
    teacher_p50s = [r["teacher_latency_ms_p50"] for r in records]
    teacher["latency_ms_p50"] = statistics.median(teacher_p50s) if teacher_p50s else None
    machine = machine_info()
    summary: dict[str, Any] = {
        "budget": config.budget.limits(),
        "machine": machine,
        "machine_summary": machine_summary(machine),
        "num_threads": NUM_THREADS,
        "query_sample": len(context.queries),
        "teacher": teacher,
        # The teacher is timed in every trial: how far its p50 moved over the search shows the machine's drift.
        "teacher_latency_drift_pct": drift_pct(min(teacher_p50s), max(teacher_p50s)) if teacher_p50s else None,
        "trials": records,
        "front": [r["number"] for r in non_dominated(records)],
    }
    chosen = choose(records)
    artifact = None
    if chosen is None:
        message = closest_message(config.budget, records)
        # A chosen/ folder of an earlier run under another budget would pass for an answer to this one.
        shutil.rmtree(config.output / "chosen", ignore_errors=True)
    else:
        if chosen["test_accuracy"] is None:  # off the front only through an exact tie on accuracy and latency
            chosen["test_accuracy"] = _test_accuracy(chosen["artifact"], datamodule)
        final = _final_latency(context, chosen, datamodule)
        chosen.update(final)
        stated = {k: summary[k] for k in _STATED}
        artifact = write_chosen(config.output / "chosen", chosen, stated, datamodule)
        message = (
            f"chosen: trial {chosen['number']} ({describe(chosen['settings'])}): val acc "
            f"{100 * chosen['val_accuracy']:.2f}%, test acc {100 * chosen['test_accuracy']:.2f}%, "
            "p50 on the test split "
            f"{final['test_latency_ms_p50']:.4g} ms ({final['test_latency_ratio']:.3g}x faster than the teacher; "
            f"{final['latency_drift_pct']:.3g}% from its search measurement), {chosen['size_mb']:.4g} MB -> {artifact}"
        )
    summary.update(chosen=None if chosen is None else chosen["number"], message=message)
    _write_front(config.output, summary, records, teacher)
    print(f"[compress] {message}\n[compress] wrote {config.output / 'front.json'}, front.md, front.png", flush=True)
    return CompressResult(config.output, records, chosen, artifact, message)


_STATED = ("budget", "machine", "machine_summary", "num_threads", "teacher", "teacher_latency_drift_pct")


def _final_latency(context: SearchContext, chosen: dict[str, Any], datamodule: Any) -> dict[str, float]:
    """The chosen artifact timed again, on the whole test split, interleaved with the teacher."""
    predict = load_predictor(chosen["artifact"], datamodule.encode)
    queries = query_sample(datamodule, "test", None)
    timed = interleaved_latency({"candidate": predict, "teacher": context.teacher_predict}, queries, _FINAL_TURNS)
    p50 = timed["candidate"]["latency_ms_p50"]
    return {
        "test_latency_ms_p50": p50,
        "test_teacher_latency_ms_p50": timed["teacher"]["latency_ms_p50"],
        "test_latency_ratio": round(timed["teacher"]["latency_ms_p50"] / p50, 4),
        "latency_drift_pct": drift_pct(chosen["latency_ms_p50"], p50),
    }


def _write_front(output: Path, summary: dict[str, Any], records: list[dict[str, Any]], teacher: dict) -> None:
    write_front_json(output / "front.json", summary)
    write_front_markdown(output / "front.md", summary)
    if records:
        plot_front(records, output / "front.png", summary["budget"], teacher)
