"""compress on the digits MLP: the front, the chosen artifact, resuming a stopped search, budgets and bad spaces."""

import json
import shutil
from pathlib import Path

import lightning.pytorch as pl
import optuna
import pytest
import torch
import yaml
from conftest import ROOT
from torch import nn

from lightning_distill.core.benchmark.measure import accuracy, file_size_mb
from lightning_distill.core.export import load_exported
from lightning_distill.core.models import MLP
from lightning_distill.lightning.cli import cli_main
from lightning_distill.lightning.compress import (
    Budget,
    CompressConfig,
    CompressConfigError,
    Dimension,
    Teacher,
    Trials,
    compress,
    dominates,
    load_compress_config,
)
from lightning_distill.lightning.compress.candidate import load_predictor, write_artifact
from lightning_distill.lightning.compress.chosen import write_chosen
from lightning_distill.lightning.compress.space import check_search_space
from lightning_distill.lightning.compress.teacher import teacher_spec
from lightning_distill.lightning.data import DigitsDataModule
from lightning_distill.lightning.main import main

TEACHER_YAML = str(ROOT / "configs/digits/teacher.yaml")
DATA = {"class_path": "lightning_distill.lightning.data.DigitsDataModule", "init_args": {"batch_size": 64, "seed": 0}}
SPACE = {
    "hidden_width": Dimension("hidden_width", choices=(8, 16)),
    "temperature": Dimension("temperature", low=1.0, high=4.0),
    "int8": Dimension("int8", choices=("none", "ort_dynamic")),
}
GENEROUS = Budget(size_ratio=0.5, max_drop_points=60.0)


class FitCounter:
    """Counts real Lightning fits (the wrapped ``Trainer.fit`` still runs them)."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        self.count = 0
        original = pl.Trainer.fit

        def fit(trainer: pl.Trainer, *args, **kwargs):
            self.count += 1
            return original(trainer, *args, **kwargs)

        patch.setattr(pl.Trainer, "fit", fit)


class TeacherExamples:
    """Counts the training examples the digits teacher (the MLP with a 256-unit layer) runs on, by their pixels; the
    wrapped forward still runs."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        data = DigitsDataModule(batch_size=64, seed=0)
        data.setup("fit")
        self.train = {example[0].numpy().tobytes() for example in data.train_dataloader().dataset}
        self.count = 0
        original = MLP.forward

        def forward(model: MLP, inputs):
            if any(isinstance(m, nn.Linear) and m.out_features == 256 for m in model.modules()):
                self.count += sum(row.detach().numpy().tobytes() in self.train for row in inputs)
            return original(model, inputs)

        patch.setattr(MLP, "forward", forward)


def _config(output: Path, teacher: Teacher, **changes) -> CompressConfig:
    settings = {
        "teacher": teacher,
        "data": DATA,
        "search_space": SPACE,
        "budget": GENEROUS,
        "trials": Trials(n_trials=4),
        "max_epochs": 1,
        "output_dir": str(output),
        "query_sample": 8,
        "latency_turns": 1,
    }
    return CompressConfig(**{**settings, **changes})


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 4-trial search stopped by an exception after its second trial, then resumed by a second compress()."""
    root = tmp_path_factory.mktemp("compress")
    quiet = ["--trainer.enable_progress_bar=false", "--trainer.logger=false", "--trainer.max_epochs=2"]
    teacher_dir = root / "teacher"
    cli_main(["fit", "--config", TEACHER_YAML, *quiet, f"--trainer.callbacks={json.dumps(_checkpoint(teacher_dir))}"])
    config = _config(root / "out", Teacher(config=TEACHER_YAML, checkpoint=str(teacher_dir / "best.ckpt")))

    def stop_after_second(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 1:
            raise RuntimeError("search killed after its second trial")

    with pytest.MonkeyPatch.context() as patch:
        fits = FitCounter(patch)
        teacher = TeacherExamples(patch)
        with pytest.raises(RuntimeError, match="killed after its second trial"):
            compress(config, callbacks=[stop_after_second])
        first_fits = fits.count
        study = optuna.load_study(study_name="compress", storage=f"sqlite:///{root / 'out/study.db'}")
        first_params = [t.params for t in study.trials]
        result = compress(config)
    return {
        "config": config,
        "result": result,
        "first_fits": first_fits,
        "fits": fits.count,
        "first": first_params,
        "teacher_train_examples": teacher.count,
        "train_examples": len(teacher.train),
    }


def _checkpoint(folder: Path) -> list[dict]:
    init = {"monitor": "val/acc", "mode": "max", "dirpath": str(folder), "filename": "best"}
    return [{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": init}]


def test_a_stopped_search_resumes_without_rerunning_finished_trials(searched: dict) -> None:
    assert searched["first_fits"] == 2  # the teacher checkpoint is given: only the two trials fit
    assert searched["fits"] == 4  # the resumed search fit only the two trials still missing
    study = optuna.load_study(study_name="compress", storage=f"sqlite:///{searched['config'].output / 'study.db'}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert [t.number for t in complete] == [0, 1, 2, 3]
    assert [t.params for t in complete[:2]] == searched["first"]
    assert [r["number"] for r in searched["result"].records] == [0, 1, 2, 3]


def test_the_front_is_non_dominated_and_every_other_trial_is_dominated(searched: dict) -> None:
    front_json = json.loads((searched["config"].output / "front.json").read_text())
    records = front_json["trials"]
    front = [r for r in records if r["on_front"]]
    assert front and sorted(r["number"] for r in front) == sorted(front_json["front"])
    for record in records:
        dominated = any(dominates(other, record) for other in records if other is not record)
        assert dominated != record["on_front"], record
        assert (record["test_accuracy"] is not None) == record["on_front"]  # test measured for front points only
    assert (searched["config"].output / "front.png").stat().st_size > 0
    assert "| trial |" in (searched["config"].output / "front.md").read_text()


def test_the_chosen_artifact_meets_the_budget_on_the_validation_split(searched: dict) -> None:
    result, config = searched["result"], searched["config"]
    assert result.chosen is not None and result.chosen_artifact.is_file()
    assert result.chosen_artifact.parent == config.output / "chosen"
    stated = json.loads((config.output / "chosen/chosen.json").read_text())
    teacher = stated["teacher"]
    data = DigitsDataModule(batch_size=64, seed=0)
    inputs, labels = data.benchmark_data("val")
    val_accuracy = accuracy(load_predictor(result.chosen_artifact, data.encode), inputs, labels)
    assert val_accuracy == pytest.approx(result.chosen["val_accuracy"])
    assert 100 * (teacher["val_accuracy"] - val_accuracy) <= GENEROUS.max_drop_points
    assert file_size_mb(result.chosen_artifact) <= GENEROUS.size_ratio * teacher["size_mb"]
    assert stated["budget"] == GENEROUS.limits() and stated["machine"]["cpu"]
    feasible = [r for r in result.records if r["meets_budget"]]
    assert result.chosen["val_accuracy"] == max(r["val_accuracy"] for r in feasible)


def test_the_chosen_artifact_is_an_export_folder_whose_card_states_the_budget(searched: dict) -> None:
    result, config = searched["result"], searched["config"]
    front = json.loads((config.output / "front.json").read_text())
    chosen = next(r for r in front["trials"] if r["number"] == front["chosen"])
    classify = load_exported(config.output / "chosen", graph=result.chosen_artifact.name)
    data = DigitsDataModule(batch_size=64, seed=0)
    inputs, labels = data.benchmark_data("val")
    predicted = classify.predict_ids(data.encode(inputs))
    assert sum(int(p == y) for p, y in zip(predicted, labels.tolist(), strict=True)) / len(labels) == pytest.approx(
        chosen["val_accuracy"], abs=0.002
    )
    card = (config.output / "chosen/README.md").read_text()
    assert "size_ratio <= 0.5, max_drop_points <= 60" in card
    assert f"figures are for: `{result.chosen_artifact.name}" in card and front["machine_summary"] in card


def test_the_teacher_runs_on_the_training_set_once_for_all_trials(searched: dict) -> None:
    # Four one-epoch trials over two compress() calls: without the shared cache the teacher would run on the training
    # set four times. With it, the first fit's cache build runs it once, and every later fit reads the logits.
    assert searched["teacher_train_examples"] == searched["train_examples"]
    assert len([p for p in (searched["config"].output / "teacher_cache").iterdir() if p.is_dir()]) == 1


def test_a_budget_nothing_meets_names_the_closest_points(searched: dict, tmp_path: Path) -> None:
    output = tmp_path / "out"
    shutil.copytree(searched["config"].output, output)
    config = searched["config"].replace(output_dir=str(output), budget=Budget(size_mb=1e-6, latency_ratio=1000.0))
    with pytest.MonkeyPatch.context() as patch:
        fits = FitCounter(patch)
        result = compress(config)  # the study already holds 4 trials: none runs, the new budget chooses again
    assert fits.count == 0
    assert result.chosen is None and not (output / "chosen").exists()
    assert result.message.startswith("no trial meets the budget (latency_ratio 1000, size_mb 1e-06)")
    assert "size_mb missed by" in result.message and "latency_ratio missed by" in result.message
    assert result.message.count("  trial ") == 3
    assert json.loads((output / "front.json").read_text())["chosen"] is None


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("hidden_widht", r"'hidden_widht', a dimension the 'mlp' family does not .*did you mean \['hidden_width'"),
        ("depth", r"'depth', a dimension the 'mlp' family does not provide \(it provides hidden_layers, hidden_width"),
    ],
)
def test_an_unknown_dimension_fails_before_any_training(tmp_path: Path, name: str, match: str) -> None:
    path = tmp_path / "compress.yaml"
    path.write_text(
        f"teacher: {{config: {TEACHER_YAML}}}\ndata: {json.dumps(DATA)}\n"
        f"output_dir: {tmp_path / 'out'}\nsearch_space:\n  {name}: [1, 2]\n"
    )
    with pytest.MonkeyPatch.context() as patch:
        fits = FitCounter(patch)
        with pytest.raises(CompressConfigError, match=match):
            compress(load_compress_config(path))
    assert fits.count == 0 and not (tmp_path / "out").exists()


def test_a_value_the_dimension_does_not_allow_is_refused() -> None:
    config = _config(Path("unused"), Teacher(config=TEACHER_YAML), search_space={"int8": Dimension("int8", ("fp8",))})
    with pytest.raises(CompressConfigError, match=r"search_space.int8: 'fp8' is not allowed; it must be one of"):
        compress(config)


COMPRESS_CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if "budget" in (yaml.safe_load(p.read_text()) or {})
)


@pytest.mark.parametrize("path", COMPRESS_CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_compress_configs_are_valid(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert path.read_text().startswith("#"), "each config starts with a comment saying what it does and how to run it"
    config = load_compress_config(path)
    check_search_space(config.family, config.search_space)
    assert teacher_spec(config)["class_path"]


def test_the_compress_verb_refuses_a_bad_space_as_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "compress.yaml"
    path.write_text(f"teacher: {{config: {TEACHER_YAML}}}\ndata: {json.dumps(DATA)}\nsearch_space: {{widht: [8]}}\n")
    with pytest.raises(SystemExit) as stopped:
        main(["compress", "--config", str(path), "--n_trials", "2", "--output_dir", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert "'widht', a dimension the 'mlp' family does not provide" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_help_lists_the_compress_verb(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "compress Search distilled, exported students" in " ".join(capsys.readouterr().out.split())
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    out = capsys.readouterr().out
    assert "--n_trials N_TRIALS" in out and "--timeout_s TIMEOUT_S" in out


def test_a_torchao_winner_gets_the_fp32_folder_and_the_card_names_the_measured_file(tmp_path: Path) -> None:
    pytest.importorskip("torchao", reason="torchao_dynamic artifacts need the [torchao] extra")
    data = DigitsDataModule(batch_size=64, seed=0)
    data.setup("fit")
    student = MLP(in_features=64, num_classes=10, hidden_sizes=[16])
    spec = {"class_path": "lightning_distill.core.models.MLP", "init_args": {"in_features": 64, "hidden_sizes": [16]}}
    spec["init_args"]["num_classes"] = 10
    artifact = write_artifact(student, spec, "torchao_dynamic", tmp_path / "trial_000", data)
    figures = {"val_accuracy": 0.5, "latency_ms_p50": 0.02, "latency_ratio": 1.5, "size_mb": 0.01, "size_ratio": 0.05}
    record = {"number": 0, "settings": {"int8": "torchao_dynamic"}, "artifact": str(artifact), **figures}
    statement = {
        "budget": {"size_ratio": 0.1},
        "machine_summary": "a test machine",
        "num_threads": 1,
        "teacher": {"val_accuracy": 0.9, "size_mb": 0.2},
    }
    chosen = write_chosen(tmp_path / "chosen", record, statement, data)
    assert chosen == tmp_path / "chosen/model_torchao.pt" and chosen.is_file()
    card = (tmp_path / "chosen/README.md").read_text()
    assert "figures are for: `model_torchao.pt (torchao int8 of student.pt; model.onnx is the same student's" in card
    assert "size_ratio <= 0.1" in card and "a test machine" in card
    inputs = data.benchmark_data("val")[0]
    fp32 = load_exported(tmp_path / "chosen", graph="model.onnx").predict_ids(data.encode(inputs))
    with torch.no_grad():
        expected = student.eval()(data.encode(inputs)).argmax(-1).tolist()
    assert fp32 == expected  # the folder's fp32 graph is the chosen student
