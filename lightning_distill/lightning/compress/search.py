"""``compress``: an Optuna multi-objective search of distilled, exported students under a budget.

Each trial samples the family's dimensions, distils a student from the teacher in-process through
:class:`~lightning_distill.lightning.cli.DistillCLI` (a fit config written into the trial's folder), writes its
artifact (fp32 ONNX, ONNX Runtime int8 or torchao int8), and measures it reloaded from disk: validation accuracy,
batch-1 p50 latency in interleaved turns against the teacher, and size on disk. The objectives are accuracy (up),
latency and size (down); the budget's limits are Optuna constraints. The study is a SQLite file in the output folder,
so a stopped search resumes and runs only the trials still missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import write_text, write_torch
from lightning_distill.core.benchmark.measure import accuracy, file_size_mb, interleaved_latency
from lightning_distill.lightning.cli import DistillCLI
from lightning_distill.lightning.compress.budget import budget_misses, describe, meets
from lightning_distill.lightning.compress.candidate import (
    calibration_inputs,
    load_predictor,
    student_spec,
    write_artifact,
)
from lightning_distill.lightning.compress.config import CompressConfig
from lightning_distill.lightning.compress.pruned_start import pruned_start
from lightning_distill.lightning.compress.quiet import QUIET_TRAINER
from lightning_distill.lightning.compress.space import CNN_BASE, Family, suggest
from lightning_distill.lightning.compress.teacher import TeacherRecord
from lightning_distill.lightning.tuning.search import fail_abandoned_trials

optuna = require("optuna", "lightning-distill compress")
TrialState = optuna.trial.TrialState

OBJECTIVES = ("val_accuracy", "latency_ms_p50", "size_mb")
TrialCallback = Callable[[Any, Any], None]


@dataclass
class SearchContext:
    """What every trial shares: the config, the family, the teacher (record, figures, predictor), the queries and the
    data module they come from."""

    config: CompressConfig
    family: Family
    teacher: TeacherRecord
    teacher_figures: dict[str, Any]
    teacher_predict: Any
    queries: list[Any]
    datamodule: Any = None


def teacher_cache_dir(config: CompressConfig) -> Path:
    """The one teacher-logits cache of a search, ``<output_dir>/teacher_cache``: the first trial's fit runs the teacher
    over the training set and stores its logits there; every later fit (resumed searches too) reads them."""
    return config.output / "teacher_cache"


def trial_config(context: SearchContext, values: dict[str, Any], folder: Path) -> dict[str, Any]:
    """The fit config of one trial: the family's student distilled from the teacher on the config's data, with the
    teacher's training-set logits read from the search's shared cache (:func:`teacher_cache_dir`)."""
    config = context.config
    limits = {} if config.limit_train_batches is None else {"limit_train_batches": config.limit_train_batches}
    return {
        "seed_everything": config.seed,
        "model": {
            "class_path": "lightning_distill.lightning.modules.DistillationModule",
            "init_args": {
                "student": context.family.student(values, config.student),
                "teacher": context.teacher.spec,
                "teacher_checkpoint": context.teacher.checkpoint,
                "loss": {
                    "class_path": "lightning_distill.core.losses.KDLoss",
                    "init_args": {
                        "temperature": float(values["temperature"]),
                        "soft_target_weight": float(values["soft_target_weight"]),
                    },
                },
                "learning_rate": float(values["learning_rate"]),
                # Every family's fit distils logits only (no feature losses), so all of them can use the cache.
                "cache_teacher_logits": True,
                "teacher_cache_dir": str(teacher_cache_dir(config)),
            },
        },
        "data": config.data,
        "trainer": {
            "max_epochs": config.max_epochs,
            "accelerator": "cpu",
            "devices": 1,
            "logger": False,
            "enable_checkpointing": False,
            "default_root_dir": str(folder),
            **limits,
        },
    }


def build_cli(config_path: Path, run: bool) -> DistillCLI:
    """Run (``fit``) or only build a trial's config in-process, without Lightning's bars and summaries."""
    args = ["--config", str(config_path), *QUIET_TRAINER]
    if not run:
        return DistillCLI(args=args, run=False, parser_kwargs={"exit_on_error": False})
    try:
        return DistillCLI(args=["fit", *args])
    except SystemExit as error:
        # Lightning answers Ctrl+C with a graceful shutdown and sys.exit(1); let optuna record a failed trial.
        raise KeyboardInterrupt(f"the fit of {config_path} stopped (exit code {error.code})") from error


def _measure(context: SearchContext, artifact: Path, datamodule: Any) -> dict[str, Any]:
    predict = load_predictor(artifact, datamodule.encode)
    inputs, labels = datamodule.benchmark_data("val")
    timed = interleaved_latency(
        {"candidate": predict, "teacher": context.teacher_predict}, context.queries, context.config.latency_turns
    )
    p50, teacher_p50 = timed["candidate"]["latency_ms_p50"], timed["teacher"]["latency_ms_p50"]
    size = file_size_mb(artifact)
    return {
        "val_accuracy": accuracy(predict, inputs, labels),
        "latency_ms_p50": p50,
        "latency_ms_p95": timed["candidate"]["latency_ms_p95"],
        "teacher_latency_ms_p50": teacher_p50,
        "latency_ratio": round(teacher_p50 / p50, 4),
        "size_mb": round(size, 6),
        "size_ratio": round(size / context.teacher_figures["size_mb"], 6),
        "num_threads": timed["candidate"]["num_threads"],
    }


def fit_trial(context: SearchContext, values: dict[str, Any], config_path: Path, folder: Path) -> DistillCLI:
    """Fit a trial's config; with ``student_checkpoint`` the student starts from the trained base student pruned to
    the trial's ``channel_sparsity`` (saved as ``start.pt`` in the trial's folder) and is distil-finetuned."""
    config = context.config
    if config.student_checkpoint is None:
        return build_cli(config_path, run=True)
    cli = build_cli(config_path, run=False)
    datamodule = cli.datamodule
    datamodule.prepare_data()
    datamodule.setup("fit")
    base = config.student or CNN_BASE
    example = calibration_inputs(datamodule)[:2]
    start = pruned_start(base, config.student_checkpoint, values["channel_sparsity"], cli.model.student, example)
    write_torch(folder / "start.pt", start)
    cli.model.student.load_state_dict(start)
    try:
        cli.trainer.fit(cli.model, datamodule=datamodule)
    except SystemExit as error:  # as in build_cli: Ctrl+C becomes a failed trial
        raise KeyboardInterrupt(f"the fit of {config_path} stopped (exit code {error.code})") from error
    return cli


def run_trial(context: SearchContext, trial: Any) -> tuple[float, float, float]:
    """Fit, export and measure one trial; its figures, budget misses and artifact go into its user attributes."""
    config = context.config
    searched = suggest(trial, config.search_space)
    values = context.family.values(searched)
    folder = config.output / "trials" / f"trial_{trial.number:03d}"
    folder.mkdir(parents=True, exist_ok=True)
    config_path = write_text(folder / "config.yaml", yaml.safe_dump(trial_config(context, values, folder)))
    start = time.perf_counter()
    cli = fit_trial(context, values, config_path, folder)
    datamodule = cli.datamodule
    student = cli.model.student
    spec = student_spec(context.family.student(values, config.student), student)
    artifact = write_artifact(student, spec, values["int8"], folder, datamodule)
    figures = _measure(context, artifact, datamodule)
    misses = budget_misses(config.budget, figures, context.teacher_figures["val_accuracy"])
    for name, value in misses.items():  # the budget as Optuna constraints: feasible when every value is <= 0
        trial.set_constraint(name, value)
    for key, value in {
        "settings": values,
        "artifact": str(artifact),
        "figures": figures,
        "budget_misses": misses,
        "seconds": round(time.perf_counter() - start, 2),
    }.items():
        trial.set_user_attr(key, value)
    _progress(context, trial, values, figures, misses)
    return figures["val_accuracy"], figures["latency_ms_p50"], figures["size_mb"]


def _progress(context: SearchContext, trial: Any, values: dict[str, Any], figures: dict, misses: dict) -> None:
    done = len(trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) + 1
    feasible = [t for t in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _meets(t)]
    if meets(misses):
        feasible.append(trial)
    best = max(feasible, key=_rank, default=None)
    best_text = "none meets the budget yet"
    if best is not None:
        f = figures if best is trial else best.user_attrs["figures"]
        best_text = f"best so far: trial {best.number}, {100 * f['val_accuracy']:.2f}%, {f['latency_ms_p50']:.4g} ms"
    print(
        f"[compress {done}/{context.config.trials.n_trials}] trial {trial.number}: {describe(values)} -> val acc "
        f"{100 * figures['val_accuracy']:.2f}%, p50 {figures['latency_ms_p50']:.4g} ms ({figures['latency_ratio']:.3g}x"
        f" faster), {figures['size_mb']:.4g} MB ({figures['size_ratio']:.3g} of teacher), "
        f"{'meets' if meets(misses) else 'misses'} the budget; {best_text}",
        flush=True,
    )


def _meets(trial: Any) -> bool:
    return meets(trial.user_attrs.get("budget_misses", {"missing": 1.0}))


def _rank(trial: Any) -> tuple[float, float]:
    figures = trial.user_attrs.get("figures") or {}
    return figures.get("val_accuracy", 0.0), -figures.get("latency_ms_p50", 0.0)


def open_study(config: CompressConfig) -> Any:
    """The search's study in ``<output_dir>/study.db``: created, or loaded to resume (trials left running by a killed
    search are marked failed and run again)."""
    config.output.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # one progress line per trial is ours
    storage = f"sqlite:///{(config.output / 'study.db').as_posix()}"
    study = optuna.create_study(
        storage=storage, study_name="compress", directions=["maximize", "minimize", "minimize"], load_if_exists=True
    )
    fail_abandoned_trials(study, "[compress]")
    # A fixed seed would replay the first trials' values after a resume; offset it by the trials already sampled.
    # TPE models the constraints each trial sets (Trial.set_constraint, Optuna's successor of constraints_func).
    study.sampler = optuna.samplers.TPESampler(
        seed=config.seed + len(study.trials), n_startup_trials=max(4, config.trials.n_trials // 4)
    )
    return study


def run_search(context: SearchContext, study: Any, callbacks: Sequence[TrialCallback] = ()) -> None:
    """Run trials until the study holds ``n_trials`` completed ones or ``timeout_s`` passes."""
    trials = context.config.trials
    remaining = trials.n_trials - len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    if remaining <= 0:
        print(f"[compress] the study already holds {trials.n_trials} completed trials: none to run", flush=True)
        return
    study.optimize(
        lambda trial: run_trial(context, trial),
        n_trials=remaining,
        timeout=trials.timeout_s,
        callbacks=list(callbacks),
        catch=(),
    )
