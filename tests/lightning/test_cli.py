import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT

from lightning_distill.core.pruning import prune_structured
from lightning_distill.lightning.cli import DistillCLI, cli_main
from lightning_distill.lightning.data import DigitsDataModule
from lightning_distill.lightning.main import main
from lightning_distill.lightning.trainer import DistillTrainer

BENCHMARK_KEYS = {
    "name",
    "accuracy",
    "params",
    "size_mb",
    "latency_ms_mean",
    "latency_ms_std",
    "latency_ms_p50",
    "latency_ms_p95",
    "throughput_per_s",
}
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.logger=false"]


class FourClassDigits(DigitsDataModule):
    """Digits 0-3 only: a data module whose class count differs from the models' default of 10."""

    num_classes = 4

    def setup(self, stage: str | None = None) -> None:
        super().setup(stage)
        for dataset in list(self._splits.values()):
            features, labels = dataset.tensors
            keep = labels < 4
            dataset.tensors = (features[keep], labels[keep])


def test_num_classes_and_in_features_are_linked_from_the_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    cli = DistillCLI(
        args=[
            "--config",
            str(ROOT / "configs/digits/distill.yaml"),
            "--model.init_args.teacher_checkpoint=null",
            f"--data={__name__}.FourClassDigits",
        ],
        run=False,
    )
    assert cli.model.num_classes == 4
    for model in (cli.model.student, cli.model.teacher):
        assert model.classifier.out_features == 4 and model.hidden[0].in_features == 64


def test_fit_test_and_benchmark_through_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the configs write under runs/ relative to the working directory
    teacher = str(ROOT / "configs/digits/teacher.yaml")
    distill = str(ROOT / "configs/digits/distill.yaml")
    cli_main(["fit", "--config", teacher, "--trainer.max_epochs=2", *QUIET])
    assert (tmp_path / "runs/digits/teacher/checkpoints/best.ckpt").is_file()
    cli = cli_main(["fit", "--config", distill, "--trainer.max_epochs=2", *QUIET])
    student_ckpt = tmp_path / "runs/digits/distill/checkpoints/best.ckpt"
    assert cli.model.teacher_val_acc > 0.5

    cli = cli_main(["test", "--config", distill, "--ckpt_path", str(student_ckpt), *QUIET])
    test_acc = cli.trainer.callback_metrics["test/acc"].item()

    output = tmp_path / "bench.json"
    args = ["benchmark", "--config", distill, "--ckpt_path", str(student_ckpt), "--output", str(output)]
    cli_main([*args, "--name", "student", "--iterations", "20"])
    cli_main([*args, "--name", "again", "--iterations", "20"])
    rows = json.loads(output.read_text())
    assert [r["name"] for r in rows] == ["student", "again"]
    row = rows[0]
    assert BENCHMARK_KEYS <= row.keys()
    assert row["accuracy"] == pytest.approx(test_acc, abs=1e-6)
    assert row["params"] == 64 * 32 + 32 + 32 * 10 + 10
    assert 0 < row["latency_ms_p50"] <= row["latency_ms_p95"] and row["throughput_per_s"] > 0
    assert row["num_threads"] == 1 and row["size_mb"] > 0
    assert row["weights"] == str(student_ckpt)


def _benchmark_args(tmp_path: Path, *extra: str) -> list[str]:
    config = str(ROOT / "configs/digits/distill.yaml")
    return ["benchmark", "--config", config, "--output", str(tmp_path / "b.json"), "--iterations", "5", *extra]


def test_benchmark_refuses_untrained_weights_before_building_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    # No teacher checkpoint exists under tmp_path: a refusal that came after building the model would name it instead.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        cli_main(_benchmark_args(tmp_path))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "benchmark needs the trained weights: pass --ckpt_path CHECKPOINT" in err and "--weights config" in err
    assert not (tmp_path / "b.json").exists()

    with pytest.raises(SystemExit):
        cli_main(_benchmark_args(tmp_path, "--weights", "config", "--ckpt_path", str(tmp_path / "x.ckpt")))
    assert "--weights config measures the weights the config loads, but --ckpt_path" in capsys.readouterr().err


def test_benchmark_of_the_configs_own_weights_says_so_in_the_row(tmp_path: Path) -> None:
    teacher = str(ROOT / "configs/digits/teacher.yaml")
    output = tmp_path / "b.json"
    cli_main(["benchmark", "--config", teacher, "--weights", "config", "--output", str(output), "--iterations", "5"])
    (row,) = json.loads(output.read_text())
    assert row["weights"] == "config" and row["name"] == "model"


def test_help_lists_every_subcommand_with_its_description(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    for subcommand in ("fit", "validate", "test", "predict", "benchmark"):
        assert f" {subcommand} " in out
    assert "tune Search hyperparameters with Optuna" in out
    assert "benchmark Measure accuracy, parameters, size on disk" in out
    with pytest.raises(SystemExit):
        main(["tune", "--help"])
    assert "--n_trials N_TRIALS" in capsys.readouterr().out


_SHORT_NAME_HELP = {
    "--model.help DistillationModule": "--model.teacher_checkpoint",
    "--model.help ClassifierModule": "--model.model",
    "--data.help DigitsDataModule": "--data.batch_size",
    "--trainer.callbacks.help MagnitudePruning": "--trainer.callbacks.final_sparsity",
    "--model DistillationModule --model.loss.help KDLoss": "--loss.temperature",
    "--model DistillationModule --model.student.help TinyMNIST": "--student.in_features",
}
# A fresh interpreter that imports only the CLI, as the console script does: in this process, other tests have
# already imported the classes, and jsonargparse would find them whatever the CLI imports.
_HELP_SCRIPT = """
import sys
from lightning_distill.lightning.cli import cli_main
for args in sys.argv[1:]:
    try:
        cli_main(["fit", *args.split()])
    except SystemExit as exit:
        print(f"=== {args}: exit {exit.code}", flush=True)
"""


def test_help_of_a_class_by_its_short_name() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", _HELP_SCRIPT, *_SHORT_NAME_HELP], capture_output=True, text=True, env=env, timeout=300
    )
    outputs = run.stdout.split("=== ")
    for (args, expected), output in zip(_SHORT_NAME_HELP.items(), outputs, strict=False):
        assert expected in output, f"{args}: {run.stderr[-1000:]}"
    assert [o.splitlines()[0] for o in outputs[1:]] == [f"{args}: exit 0" for args in _SHORT_NAME_HELP]


def test_short_class_names_in_a_config(tmp_path: Path) -> None:
    config = {
        "model": {
            "class_path": "DistillationModule",
            "init_args": {"student": "TinyMNIST", "teacher": "MNISTClassifier", "loss": "KDLoss"},
        },
        "data": "DigitsDataModule",
        "trainer": {"logger": False, "callbacks": [{"class_path": "MagnitudePruning"}]},
    }
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = DistillCLI(args=["--config", str(path), f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert type(cli.model).__name__ == "DistillationModule" and type(cli.model.loss).__name__ == "KDLoss"
    assert type(cli.model.student).__name__ == "TinyMNIST" and cli.model.student.hidden[0].in_features == 64
    assert isinstance(cli.datamodule, DigitsDataModule)
    assert "MagnitudePruning" in [type(c).__name__ for c in cli.trainer.callbacks]


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.usefixtures("restore_threads")
def test_num_threads_is_applied_and_recorded_in_the_saved_config(tmp_path: Path) -> None:
    teacher = str(ROOT / "configs/digits/teacher.yaml")
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1", *QUIET]
    torch.set_num_threads(2)
    cli_main(["fit", "--config", teacher, *short, "--num_threads=1", f"--trainer.default_root_dir={tmp_path / 'one'}"])
    assert torch.get_num_threads() == 1
    assert yaml.safe_load((tmp_path / "one/config.yaml").read_text())["num_threads"] == 1

    torch.set_num_threads(2)  # left out: the run keeps the process's count, and the config says which it was
    cli_main(["fit", "--config", teacher, *short, f"--trainer.default_root_dir={tmp_path / 'default'}"])
    assert yaml.safe_load((tmp_path / "default/config.yaml").read_text())["num_threads"] == 2

    with pytest.raises(SystemExit):
        cli_main(["fit", "--config", teacher, "--num_threads=0"])


def test_benchmark_missing_checkpoint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(ROOT)  # refused while parsing, before the model is built or the data loaded
    with pytest.raises(SystemExit):
        cli_main(
            [
                "benchmark",
                "--config",
                "configs/digits/teacher.yaml",
                "--ckpt_path",
                str(tmp_path / "missing.ckpt"),
                "--output",
                str(tmp_path / "b.json"),
            ]
        )
    assert f"--ckpt_path {tmp_path / 'missing.ckpt'} does not exist; pass a .ckpt file" in capsys.readouterr().err


@pytest.mark.usefixtures("restore_threads")
def test_benchmark_is_a_trainer_method_that_loads_a_pruned_checkpoint(tmp_path: Path) -> None:
    """``DistillTrainer.benchmark`` is what ``lightning-distill benchmark`` runs, and works from Python alone."""
    teacher = str(ROOT / "configs/digits/teacher.yaml")
    cli = DistillCLI(
        args=["--config", teacher, "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"], run=False
    )
    assert isinstance(cli.trainer, DistillTrainer)
    pruned = DistillCLI(args=["--config", teacher, "--trainer.logger=false"], run=False).model
    prune_structured(pruned.model, 0.5)  # hidden layers 256 -> 128 and 128 -> 64
    ckpt = tmp_path / "pruned.ckpt"
    torch.save({"state_dict": pruned.state_dict()}, ckpt)

    output = tmp_path / "b.json"
    cli.trainer.benchmark(
        cli.model, cli.datamodule, ckpt_path=str(ckpt), output=str(output), iterations=3, num_threads=2
    )
    (row,) = json.loads(output.read_text())
    assert row["params"] == sum(p.numel() for p in pruned.model.parameters()) == 64 * 128 + 128 + 128 * 64 + 64 + 650
    assert row["num_threads"] == 2 and row["weights"] == str(ckpt)
    for name, value in pruned.model.state_dict().items():
        assert torch.equal(cli.model.model.state_dict()[name], value), name
