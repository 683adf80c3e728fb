import sys
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest
import torch
import yaml
from conftest import ROOT
from optuna.trial import TrialState

from lightning_distill.lightning.cli import cli_main
from lightning_distill.lightning.main import main
from lightning_distill.lightning.tuning import (
    OptunaPruning,
    TuneConfig,
    TuneConfigError,
    check_search_keys,
    load_tune_config,
    tune,
)

TUNE_YAML = ROOT / "configs/digits/tune.yaml"
DISTILL_YAML = ROOT / "configs/digits/distill.yaml"
TUNE_CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if "base_config" in (yaml.safe_load(p.read_text()) or {})
)  # compress specs also have a search_space; tests/lightning/compress checks them
TEMPERATURE = "model.init_args.loss.init_args.temperature"
SOFT_WEIGHT = "model.init_args.loss.init_args.soft_target_weight"
LEARNING_RATE = "model.init_args.learning_rate"
QUIET = ["--trainer.enable_progress_bar=false"]


def _spec(search_space: dict | None = None, **settings) -> dict:
    space = search_space or {LEARNING_RATE: {"low": 1e-4, "high": 1e-2, "log": True}}
    return {"base_config": str(DISTILL_YAML), "search_space": space, **settings}


def test_tune_two_trials_resume_and_fit_the_best_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the configs write under runs/ relative to the working directory
    teacher = ["fit", "--config", str(ROOT / "configs/digits/teacher.yaml"), "--trainer.max_epochs=2", *QUIET]
    cli_main([*teacher, "--trainer.logger=false"])
    config = load_tune_config(
        TUNE_YAML, base_config=str(DISTILL_YAML), n_trials=2, max_epochs=2, pruner_warmup_epochs=1
    )

    tune(config)
    study = optuna.load_study(study_name=config.study_name, storage=config.storage)
    assert (tmp_path / "runs/tune/digits.db").is_file()
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2  # the pruner waits for 2 finished trials
    first = [t.params for t in study.trials]
    for trial in study.trials:
        assert set(trial.params) == {TEMPERATURE, SOFT_WEIGHT, LEARNING_RATE}
        assert (tmp_path / trial.user_attrs["trial_dir"] / "checkpoints/best.ckpt").is_file()
        assert 0.0 < trial.value <= 1.0 and len(trial.intermediate_values) == 2
        assert trial.value == max(trial.intermediate_values.values())
    assert not (tmp_path / "runs/digits/distill").exists()  # trials never write into the base config's run

    # A search killed mid-trial leaves it RUNNING: the resumed search fails it and runs what is missing, here a
    # queued trial whose tiny learning rate falls below the median after two epochs, then a freshly sampled one.
    stopped = optuna.load_study(study_name=config.study_name, storage=config.storage)
    stopped.ask()
    slow = {**first[0], LEARNING_RATE: 1e-4}
    stopped.enqueue_trial(slow)
    tune(config.replace(n_trials=4))
    study = optuna.load_study(study_name=config.study_name, storage=config.storage)
    assert optuna.get_all_study_names(config.storage) == [config.study_name]
    states = [t.state for t in study.trials]
    assert states[:4] == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED]
    assert len(states) == 5 and states[4] in (TrialState.COMPLETE, TrialState.PRUNED)
    assert study.trials[3].params == slow and list(study.trials[3].intermediate_values) == [0, 1]
    assert [t.params for t in study.trials[:2]] == first and study.trials[4].params not in first

    best_yaml = tmp_path / "runs/tune/digits/best.yaml"
    text = best_yaml.read_text()
    assert text.startswith("#") and f"trial {study.best_trial.number}" in text
    written = yaml.safe_load(text)
    assert written["model"]["init_args"]["learning_rate"] == study.best_params[LEARNING_RATE]
    assert written["model"]["init_args"]["loss"]["init_args"]["temperature"] == study.best_params[TEMPERATURE]
    assert written["trainer"] == yaml.safe_load(DISTILL_YAML.read_text())["trainer"]

    cli = cli_main(["fit", "--config", str(best_yaml), "--trainer.max_epochs=1", *QUIET])
    assert cli.model.loss.temperature == pytest.approx(study.best_params[TEMPERATURE])
    assert cli.model.loss.soft_target_weight == pytest.approx(study.best_params[SOFT_WEIGHT])
    assert cli.model.hparams.learning_rate == pytest.approx(study.best_params[LEARNING_RATE])
    assert (tmp_path / "runs/digits/distill/checkpoints/best.ckpt").is_file()


def test_pruning_callback_reports_and_prunes_below_the_median() -> None:
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1))
    trainer = SimpleNamespace(sanity_checking=False, current_epoch=0, callback_metrics={"val/acc": torch.tensor(0.9)})
    leader = OptunaPruning(study.ask(), verbose=False)
    leader.on_validation_end(trainer, None)
    study.tell(leader.trial, leader.best)

    trainer.callback_metrics["val/acc"] = torch.tensor(0.2)
    laggard = OptunaPruning(study.ask(), verbose=False)
    with pytest.raises(optuna.TrialPruned, match=r"val/acc 0.2000 is worse than the median"):
        laggard.on_validation_end(trainer, None)
    assert laggard.trial.study.trials[1].intermediate_values == {0: pytest.approx(0.2)}
    assert laggard.pruned_at == 0 and laggard.best == pytest.approx(0.2)

    trainer.callback_metrics = {"val/loss": torch.tensor(1.0)}
    with pytest.raises(KeyError, match=r"'val/acc' was not logged.*val/loss"):
        OptunaPruning(study.ask(), verbose=False).on_validation_end(trainer, None)


@pytest.mark.parametrize(
    ("space", "message"),
    [
        (
            {LEARNING_RATE: {"low": 1e-2, "high": 1e-4}},
            r"learning_rate'\]: empty range, low \(0.01\) .* high \(0.0001\)",
        ),
        ({TEMPERATURE: {"low": 4.0, "high": 4.0}}, r"temperature'\]: empty range, low \(4.0\) must be smaller"),
        ({TEMPERATURE: {"low": 0.0, "high": 4.0, "log": True}}, r"log: true needs low > 0, got low=0.0"),
        ({TEMPERATURE: {"low": 1.0, "hi": 4.0}}, r"unknown keys \['hi'\]; allowed keys are low, high, log"),
        ({TEMPERATURE: {"low": 1.0}}, r"needs both low and high"),
    ],
)
def test_bad_ranges_are_refused_by_key(space: dict, message: str) -> None:
    with pytest.raises(TuneConfigError, match=message):
        TuneConfig.from_dict(_spec(space))


def test_bad_settings_are_refused() -> None:
    with pytest.raises(TuneConfigError, match=r"unknown keys \['n_trails'\]"):
        TuneConfig.from_dict(_spec(n_trails=3))
    with pytest.raises(TuneConfigError, match=r"search_space is empty"):
        TuneConfig.from_dict({"base_config": "x.yaml", "search_space": {}})
    with pytest.raises(TuneConfigError, match=r"direction must be one of"):
        TuneConfig.from_dict(_spec(direction="max"))
    with pytest.raises(TuneConfigError, match=r"n_trials must be an integer >= 1, got 0"):
        TuneConfig.from_dict(_spec()).replace(n_trials=0)


def test_search_keys_must_be_numbers_of_the_base_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    typo = TuneConfig.from_dict(_spec({"model.init_args.loss.init_args.temprature": {"low": 1.0, "high": 2.0}}))
    with pytest.raises(
        TuneConfigError, match=rf"'model.init_args.loss.init_args.temprature' is not a parameter.*{TEMPERATURE}"
    ):
        check_search_keys(typo)
    not_a_number = TuneConfig.from_dict(_spec({"model.init_args.teacher_checkpoint": {"low": 1.0, "high": 2.0}}))
    with pytest.raises(TuneConfigError, match=r"holds 'runs/digits/teacher/checkpoints/best.ckpt'.*only numbers"):
        check_search_keys(not_a_number)


def test_console_script_dispatches_tune_and_reports_an_empty_range(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    spec = yaml.safe_load(TUNE_YAML.read_text())
    spec["search_space"][SOFT_WEIGHT] = {"low": 0.9, "high": 0.1}
    bad = tmp_path / "tune.yaml"
    bad.write_text(yaml.safe_dump(spec))
    monkeypatch.setattr(sys, "argv", ["lightning-distill", "tune", "--config", str(bad), "--n_trials", "1"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "soft_target_weight']: empty range, low (0.9) must be smaller than high (0.1)" in capsys.readouterr().err


@pytest.mark.parametrize("config", TUNE_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_tune_configs_are_valid(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert config.read_text().startswith("#"), "each config starts with a comment saying what it does and how to run it"
    check_search_keys(load_tune_config(config))
