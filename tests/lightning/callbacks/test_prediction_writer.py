import csv
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import ROOT
from tiny_text import INTENTS, text_data, write_text_task

from lightning_distill.core.models import TransformerClassifier
from lightning_distill.lightning.callbacks import PredictionWriter
from lightning_distill.lightning.cli import cli_main
from lightning_distill.lightning.modules import ClassifierModule

QUIET = ["--trainer.enable_progress_bar=false", "--trainer.logger=false"]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def _reference_logits(module: pl.LightningModule, datamodule: pl.LightningDataModule) -> torch.Tensor:
    """What ``trainer.predict`` returns, with no prediction writer involved."""
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    return torch.cat(trainer.predict(module, datamodule=datamodule))


@pytest.fixture(scope="module")
def student_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("predict")
    config = str(ROOT / "configs/digits/student.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # the config writes under runs/ relative to the working directory
        cli_main(["fit", "--config", config, "--trainer.max_epochs=1", *QUIET])
    checkpoint = root / "runs/digits/student/checkpoints/best.ckpt"
    assert checkpoint.is_file()
    return checkpoint


def test_predict_writes_one_row_per_test_example_matching_trainer_predict(student_checkpoint: Path) -> None:
    config = str(ROOT / "configs/digits/student.yaml")
    run = student_checkpoint.parents[3] / "run"
    cli = cli_main(["predict", "--config", config, "--ckpt_path", str(student_checkpoint), *QUIET,
                    f"--trainer.default_root_dir={run}"])  # fmt: skip

    rows = _rows(run / "predictions.csv")
    expected = _reference_logits(cli.model, cli.datamodule).argmax(-1)
    assert len(rows) == len(cli.datamodule.benchmark_data("test")[1]) == len(expected)
    assert list(rows[0]) == ["index", "label_id", "label"]  # digits name their labels "0".."9"; no probabilities
    assert all(row["label"] == row["label_id"] for row in rows)
    assert [int(row["index"]) for row in rows] == list(range(len(rows)))
    assert [int(row["label_id"]) for row in rows] == expected.tolist()
    assert cli.trainer.predict_loop.predictions == []  # memory stays bounded: the rows are in the file only


def test_predictions_options_path_and_probabilities(student_checkpoint: Path) -> None:
    config = str(ROOT / "configs/digits/student.yaml")
    path = student_checkpoint.parents[3] / "elsewhere/p.csv"
    args = ["--predictions.path", str(path), "--predictions.probabilities", "true"]
    cli = cli_main(["predict", "--config", config, "--ckpt_path", str(student_checkpoint), *QUIET, *args])

    rows = _rows(path)
    probabilities = _reference_logits(cli.model, cli.datamodule).softmax(-1)
    assert list(rows[0]) == ["index", "label_id", "label", *(f"prob_{i}" for i in range(10))]
    written = torch.tensor([[float(row[f"prob_{i}"]) for i in range(10)] for row in rows])
    torch.testing.assert_close(written.sum(-1), torch.ones(len(rows)), atol=1e-4, rtol=0)
    torch.testing.assert_close(written, probabilities, atol=1e-5, rtol=1e-4)
    assert [int(row["label_id"]) for row in rows] == probabilities.argmax(-1).tolist()
    assert not list(path.parent.glob(".*")), "the part files are removed after the merge"


def test_a_config_with_its_own_prediction_writer_keeps_only_that_one(student_checkpoint: Path) -> None:
    config = str(ROOT / "configs/digits/student.yaml")
    own = student_checkpoint.parents[3] / "own.csv"
    callbacks = f'[{{"class_path": "PredictionWriter", "init_args": {{"path": "{own}"}}}}]'
    cli = cli_main(["predict", "--config", config, "--ckpt_path", str(student_checkpoint), *QUIET,
                    f"--trainer.callbacks={callbacks}"])  # fmt: skip
    writers = [c for c in cli.trainer.callbacks if isinstance(c, PredictionWriter)]
    assert [w.path for w in writers] == [str(own)]
    assert own.is_file()


def test_text_predictions_name_their_labels(tmp_path: Path) -> None:
    folder = write_text_task(tmp_path / "task", teacher_layers=2)
    id2label = dict(enumerate(INTENTS))
    module = ClassifierModule(TransformerClassifier(str(folder / "teacher"), id2label=id2label), num_classes=3)
    data = text_data(folder, tokenizer=str(folder / "teacher"))
    writer = PredictionWriter(path=str(tmp_path / "text.csv"), probabilities=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    trainer.predict(module, datamodule=data)

    rows = _rows(tmp_path / "text.csv")
    expected = _reference_logits(module, data).argmax(-1).tolist()
    assert list(rows[0]) == ["index", "label_id", "label", *(f"prob_{name}" for name in INTENTS)]
    assert [int(row["label_id"]) for row in rows] == expected
    assert [row["label"] for row in rows] == [INTENTS[i] for i in expected]


def test_probabilities_need_logits(tmp_path: Path) -> None:
    class IdsOnly(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(2, 3)

        def predict_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
            return self.layer(batch[0]).argmax(-1)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(4, 2)), batch_size=2)
    writer = PredictionWriter(path=str(tmp_path / "p.csv"), probabilities=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    with pytest.raises(ValueError, match=r"probabilities=True\) needs logits.*set probabilities to false"):
        trainer.predict(IdsOnly(), loader)
    assert not list(tmp_path.iterdir()), "nothing is left behind"


def _predict_in(devices: int, out: Path) -> list[dict[str, str]]:
    script = Path(__file__).parents[1] / "ddp_predict.py"
    run = subprocess.run([sys.executable, str(script), str(devices), str(out)], capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    assert f"predictions: {out} (37 rows)" in run.stdout + run.stderr
    return _rows(out)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_ddp_writes_every_process_rows_once_in_dataset_order(tmp_path: Path) -> None:
    single = _predict_in(1, tmp_path / "one.csv")
    ddp = _predict_in(2, tmp_path / "two.csv")
    assert [int(row["index"]) for row in ddp] == list(range(37))  # the sampler's repeated example is written once
    assert [(row["label_id"], row["label"]) for row in ddp] == [(row["label_id"], row["label"]) for row in single]
    probabilities = [[float(row[f"prob_{name}"]) for name in "abc"] for row in ddp]
    expected = [[float(row[f"prob_{name}"]) for name in "abc"] for row in single]
    torch.testing.assert_close(torch.tensor(probabilities), torch.tensor(expected), atol=1e-5, rtol=1e-4)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["one.csv", "two.csv"]
