"""``lightning-distill tune``: an Optuna search whose trials are ``lightning-distill fit`` runs of one base config.

Each trial fits the base config in-process through :class:`~lightning_distill.lightning.cli.DistillCLI` with the
trial's values
as ``--key=value`` overrides and its own output folder, reports the validation metric after every epoch to Optuna's
median pruner, and scores the best value it reached (the score of its best checkpoint). The study lives in a SQLite
file, so a stopped search resumes where it stopped; the best trial's values, written into a copy of the base
config, become a config ready for ``lightning-distill fit``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from lightning_distill.core._optional import require
from lightning_distill.core.atomic import write_text
from lightning_distill.lightning.cli import DistillCLI, output_arguments
from lightning_distill.lightning.tuning.config import TuneConfig, TuneConfigError
from lightning_distill.lightning.tuning.pruning import OptunaPruning

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

optuna = require("optuna", "lightning-distill tune")
TrialState = optuna.trial.TrialState

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Trials are short and many: their own progress lines replace Lightning's bars.
_QUIET_TRAINER = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


class _ParseOnlyCLI(DistillCLI):
    """Parses and validates a config without building anything."""

    def instantiate_classes(self) -> None:
        pass


def _build(args: list[str]) -> DistillCLI:
    """Build (without running) a CLI whose argument errors raise instead of printing usage and exiting."""
    return DistillCLI(args=args, run=False, parser_kwargs={"exit_on_error": False})


def read_base_config(config: TuneConfig) -> dict[str, Any]:
    """The base config as a mapping, with an error that names the file when it is missing or not a mapping."""
    path = Path(config.base_config)
    if not path.is_file():
        raise TuneConfigError(
            f"base_config {config.base_config!r} does not exist (relative paths are taken from the working directory "
            f"{Path.cwd()}, like every path in the configs)"
        )
    base = yaml.safe_load(path.read_text())
    if not isinstance(base, dict):
        raise TuneConfigError(f"base_config {config.base_config!r} is not a mapping of LightningCLI settings")
    return base


def trial_arguments(
    config: TuneConfig, base: dict[str, Any], values: dict[str, float], trial_dir: str | Path
) -> list[str]:
    """CLI arguments (without the subcommand) that fit the base config with ``values`` into ``trial_dir``.

    The trainer's ``default_root_dir``, every logger's ``save_dir`` and every callback's ``dirpath`` (checkpoints)
    move under ``trial_dir``, so trials overwrite neither each other nor the base config's run.
    """
    trial_dir = Path(trial_dir)
    args = ["--config", config.base_config, *(f"--{key}={json.dumps(value)}" for key, value in values.items())]
    args += output_arguments(base, root_dir=trial_dir, log_dir=trial_dir, checkpoint_dir=trial_dir / "checkpoints")
    if config.max_epochs is not None:
        args.append(f"--trainer.max_epochs={config.max_epochs}")
    return [*args, *_QUIET_TRAINER]


def check_search_keys(config: TuneConfig) -> dict[str, Any]:
    """Check, without building anything, that the base config parses and holds a number at every search key.

    Returns the base config's mapping.
    """
    base = read_base_config(config)
    try:
        parsed = _ParseOnlyCLI(args=["--config", config.base_config], run=False, parser_kwargs={"exit_on_error": False})
    except argparse.ArgumentError as error:
        raise TuneConfigError(f"base_config {config.base_config!r} does not parse: {error}") from None
    keys = list(parsed.config.keys())
    for key in config.search_space:
        if key not in keys:
            close = difflib.get_close_matches(key, keys, n=3, cutoff=0.6)
            hint = f"; did you mean {close}?" if close else ""
            raise TuneConfigError(f"search_space key {key!r} is not a parameter of {config.base_config}{hint}")
        current = parsed.config[key]
        if isinstance(current, bool) or not isinstance(current, int | float | None):
            raise TuneConfigError(
                f"search_space key {key!r} holds {current!r} in {config.base_config}; only numbers can be searched"
            )
    return base


def check_search_space(config: TuneConfig) -> dict[str, Any]:
    """Fail before the first trial: :func:`check_search_keys`, then build the base config (model, data, trainer)
    with every key at its low end and at its high end, so values the classes refuse and a missing teacher checkpoint
    are reported now. Returns the base config's mapping.
    """
    base = check_search_keys(config)
    check_dir = Path(config.output_dir) / "check"
    for end in ("low", "high"):
        values = {key: getattr(r, end) for key, r in config.search_space.items()}
        try:
            _build(trial_arguments(config, base, values, check_dir))
        except Exception as error:
            raise TuneConfigError(
                f"{config.base_config} does not build with the search space at its {end} end {values}: "
                f"{type(error).__name__}: {error}"
            ) from error
    return base


def _set_key(config: dict[str, Any], key: str, value: Any) -> None:
    node = config
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"cannot write {key!r} into the base config: {part!r} is not a mapping there")
    node[parts[-1]] = value


def write_best_config(config: TuneConfig, study: optuna.Study, base: dict[str, Any] | None = None) -> Path:
    """Write the base config with the best trial's values to :attr:`TuneConfig.best_config_path` and check that it
    parses; outputs and ``max_epochs`` stay the base config's. Returns the path.
    """
    base = read_base_config(config) if base is None else base
    best = study.best_trial
    filled = json.loads(json.dumps(base))  # a deep copy that stays plain YAML
    for key, value in best.params.items():
        _set_key(filled, key, value)
    path = config.best_config_path
    values = ", ".join(f"{key.rsplit('.', 1)[-1]}={value:.4g}" for key, value in best.params.items())
    epochs = f"{config.max_epochs} epochs per trial" if config.max_epochs else "the base config's epochs"
    header = (
        f"# {config.base_config} with the best values of Optuna study {study.study_name!r} ({config.storage}):\n"
        f"# trial {best.number} of {len(study.trials)}, {config.metric} {best.value:.4f} with {epochs}; {values}.\n"
        f"# Run: lightning-distill fit --config {path}\n"
    )
    write_text(path, header + yaml.safe_dump(filled, sort_keys=False))
    try:
        _ParseOnlyCLI(args=["--config", str(path)], run=False, parser_kwargs={"exit_on_error": False})
    except argparse.ArgumentError as error:
        raise ValueError(f"the best config {path} does not parse: {error}") from None
    return path


def _open_study(config: TuneConfig) -> optuna.Study:
    if config.storage.startswith("sqlite:///"):
        Path(config.storage.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(
        storage=config.storage,
        study_name=config.study_name,
        direction=config.direction,
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=config.pruner_startup_trials, n_warmup_steps=config.pruner_warmup_epochs
        ),
        load_if_exists=True,
    )
    if study.direction.name.lower() != config.direction:
        raise TuneConfigError(
            f"study {config.study_name!r} in {config.storage} was created to {study.direction.name.lower()}, but the "
            f"tune config says direction: {config.direction}; use another study_name"
        )
    fail_abandoned_trials(study, f"[tune {config.study_name}]")
    # A fixed seed would replay the first trials' values after a resume; offset it by the trials already sampled.
    study.sampler = optuna.samplers.TPESampler(
        seed=config.seed + len(study.trials), n_startup_trials=config.sampler_startup_trials
    )
    return study


def fail_abandoned_trials(study: optuna.Study, tag: str) -> None:
    """Mark failed the trials a killed search left RUNNING, so the resumed search runs them again.

    One search process owns a study: a trial still RUNNING when a search opens it was left by one that was killed.
    """
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        study._storage.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
        print(f"{tag} trial {trial.number} was left running by a stopped search: marked failed", flush=True)


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=_FINISHED)


def _describe(values: dict[str, float]) -> str:
    return " ".join(f"{key.rsplit('.', 1)[-1]}={value:.4g}" for key, value in values.items())


def tune(config: TuneConfig) -> optuna.Study:
    """Run the search until the study holds ``config.n_trials`` finished trials; write the best config.

    Raises:
        TuneConfigError: A search-space key is not a number of the base config, or the base config does not build at the
            ends of the ranges (before any trial runs).
        KeyboardInterrupt: The search was stopped; the study keeps every finished trial and the same command
            resumes it.
    """
    base = check_search_space(config)
    verbosity = optuna.logging.get_verbosity()
    # The progress lines below replace optuna's; a stopped or failed trial raises with its own message.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        study = _open_study(config)
        done = len(_finished(study))
        tag = f"[tune {config.study_name}]"
        if done:
            print(f"{tag} resuming: {done} of {config.n_trials} trials finished in {config.storage}", flush=True)
        remaining = config.n_trials - done
        if remaining > 0:
            study.optimize(lambda trial: _run_trial(config, base, trial), n_trials=remaining)
    finally:
        optuna.logging.set_verbosity(verbosity)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise RuntimeError(f"no trial of study {config.study_name!r} completed, so there is no best config")
    path = write_best_config(config, study, base)
    best = study.best_trial
    print(
        f"{tag} best: trial {best.number}, {config.metric} {best.value:.4f}, {_describe(best.params)}\n"
        f"{tag} wrote {path}; run: lightning-distill fit --config {path}",
        flush=True,
    )
    return study


def _run_trial(config: TuneConfig, base: dict[str, Any], trial: optuna.Trial) -> float:
    values = {key: trial.suggest_float(key, r.low, r.high, log=r.log) for key, r in config.search_space.items()}
    trial_dir = Path(config.output_dir) / f"trial_{trial.number:03d}"
    trial.set_user_attr("trial_dir", str(trial_dir))
    position = f"{len(_finished(trial.study)) + 1}/{config.n_trials}"
    tag = f"[tune {config.study_name} {position}] trial {trial.number}"
    print(f"{tag}: {_describe(values)} -> {trial_dir}", flush=True)
    pruning = OptunaPruning(trial, config.metric, config.direction)
    start = time.perf_counter()
    try:
        DistillCLI(
            args=["fit", *trial_arguments(config, base, values, trial_dir)], trainer_defaults={"callbacks": [pruning]}
        )
    except optuna.TrialPruned:
        print(f"{tag}: pruned after {pruning.rounds} epochs in {time.perf_counter() - start:.1f} s", flush=True)
        raise
    except SystemExit as error:
        # Lightning answers Ctrl+C with a graceful shutdown and sys.exit(1); let optuna record a failed trial.
        raise KeyboardInterrupt(f"{tag} stopped (exit code {error.code})") from error
    if pruning.best is None:
        raise RuntimeError(f"{tag} logged no finite {config.metric!r}: did the fit run a validation epoch?")
    best = pruning.best
    note = "new best"
    if trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        leader = trial.study.best_trial
        if (leader.value > best) == (config.direction == "maximize") and leader.value != best:
            note = f"best so far {leader.value:.4f} (trial {leader.number})"
    print(f"{tag}: {config.metric} {best:.4f}, {note}, {time.perf_counter() - start:.1f} s", flush=True)
    return best
