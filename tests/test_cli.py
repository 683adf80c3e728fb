import json
from pathlib import Path

import pytest
from conftest import ROOT

from lightning_distill.cli import DistillCLI, cli_main
from lightning_distill.data import DigitsDataModule

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


def test_benchmark_missing_checkpoint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)
    with pytest.raises(FileNotFoundError, match=r"ckpt_path .* does not exist"):
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
