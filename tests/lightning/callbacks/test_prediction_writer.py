import csv
import importlib.util
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import ROOT
from lightning.pytorch.callbacks import Callback
from tiny_text import INTENTS, text_data, write_text_task
from transformers.modeling_outputs import SequenceClassifierOutput

from lightning_distill.core.models import TransformerClassifier
from lightning_distill.lightning.callbacks import PredictionWriter
from lightning_distill.lightning.callbacks.prediction_writer import merge_parts
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


class _Returns(pl.LightningModule):
    """A module whose ``predict_step`` wraps its logits as ``kind`` says."""

    def __init__(self, kind: str) -> None:
        super().__init__()
        self.kind = kind
        self.layer = torch.nn.Linear(2, 3)

    def predict_step(self, batch: list[torch.Tensor], batch_idx: int) -> object:
        logits = self.layer(batch[0])
        if self.kind == "mapping":
            return {"logits": logits, "hidden": batch[0]}
        if self.kind == "output":
            return SequenceClassifierOutput(logits=logits)
        return logits, batch[0]


def _features() -> torch.utils.data.DataLoader:
    features = torch.randn(7, 2, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(features), batch_size=3)


@pytest.mark.parametrize("kind", ["mapping", "output"])
def test_logits_are_taken_from_a_mapping_or_an_output_object(kind: str, tmp_path: Path) -> None:
    module = _Returns(kind)
    writer = PredictionWriter(path=str(tmp_path / "p.csv"), probabilities=True)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    trainer.predict(module, _features(), return_predictions=False)

    rows = _rows(tmp_path / "p.csv")
    with torch.no_grad():
        expected = module.layer(torch.cat([batch[0] for batch in _features()])).softmax(-1)
    written = torch.tensor([[float(row[f"prob_{i}"]) for i in range(3)] for row in rows])
    torch.testing.assert_close(written, expected, atol=1e-5, rtol=1e-4)


def test_a_prediction_without_logits_names_its_type_and_the_off_switch(tmp_path: Path) -> None:
    writer = PredictionWriter(path=str(tmp_path / "p.csv"))
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=[writer])
    with pytest.raises(ValueError, match=r"returned a tuple without logits.*--predictions.enabled false"):
        trainer.predict(_Returns("tuple"), _features())
    assert not list(tmp_path.iterdir()), "nothing is left behind"


def test_predictions_enabled_false_writes_nothing_and_keeps_what_predict_returns(student_checkpoint: Path) -> None:
    config = str(ROOT / "configs/digits/student.yaml")
    run = student_checkpoint.parents[3] / "off"
    cli = cli_main(["predict", "--config", config, "--ckpt_path", str(student_checkpoint), *QUIET,
                    f"--trainer.default_root_dir={run}", "--predictions.enabled", "false",
                    "--return_predictions", "true"])  # fmt: skip
    assert not any(isinstance(c, PredictionWriter) for c in cli.trainer.callbacks)
    assert not (run / "predictions.csv").exists()
    assert len(torch.cat(cli.trainer.predict_loop.predictions)) == len(cli.datamodule.benchmark_data("test")[1])


class _LoseParts(Callback):
    """Removes the part files before the merge, as a process on another node without a shared filesystem sees it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for part in self.folder.glob(".*.part"):
            part.unlink()


def test_a_missing_part_file_is_refused_naming_the_shared_filesystem(tmp_path: Path) -> None:
    writer = PredictionWriter(path=str(tmp_path / "p.csv"))
    callbacks = [_LoseParts(tmp_path), writer]
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=callbacks)
    with pytest.raises(RuntimeError, match=r"process 0 cannot see those of processes \[0\].*filesystem all processes"):
        trainer.predict(_Returns("mapping"), _features(), return_predictions=False)
    assert not (tmp_path / "p.csv").exists()


def test_merge_writes_an_example_two_processes_predicted_once_in_dataset_order(tmp_path: Path) -> None:
    # a DistributedSampler of the user's own pads rank 1 by repeating example 0
    parts = [tmp_path / "rank0.part", tmp_path / "rank1.part"]
    parts[0].write_text("0,0,1,0.1\n0,2,0,0.9\n0,4,1,0.2\n")
    parts[1].write_text("0,0,1,0.1\n0,1,2,0.3\n0,3,0,0.8\n")
    header = ["index", "label_id", "label", "prob_a"]
    count = merge_parts(parts, tmp_path / "p.csv", header, {0: "a", 1: "b", 2: "c"})

    rows = _rows(tmp_path / "p.csv")
    assert count == len(rows) == 5
    assert [(row["index"], row["label"]) for row in rows] == [
        ("0", "b"),
        ("1", "c"),
        ("2", "a"),
        ("3", "a"),
        ("4", "b"),
    ]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_ddp_writes_every_process_rows_once_in_dataset_order(tmp_path: Path) -> None:
    script = Path(__file__).parents[1] / "ddp_predict.py"
    out = tmp_path / "two.csv"
    run = subprocess.run([sys.executable, str(script), "2", str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-4000:]
    spec = importlib.util.spec_from_file_location("ddp_predict", script)
    assert spec is not None and spec.loader is not None
    ddp_predict = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ddp_predict)
    assert f"predictions: {out} ({ddp_predict.EXAMPLES} rows)" in run.stdout + run.stderr

    module, data = ddp_predict.build()  # the same seeded model and examples, predicted here in one process
    features, labels = data.predict_dataloader().dataset.tensors
    with torch.no_grad():
        module.eval()  # as trainer.predict runs it
        expected = module.predict_step((features, labels), 0).softmax(-1)
    rows = _rows(out)
    assert [int(row["index"]) for row in rows] == list(range(ddp_predict.EXAMPLES))  # both processes' rows, in order
    assert [row["label"] for row in rows] == ["abc"[i] for i in expected.argmax(-1).tolist()]
    written = torch.tensor([[float(row[f"prob_{name}"]) for name in "abc"] for row in rows])
    torch.testing.assert_close(written, expected, atol=1e-5, rtol=1e-4)
    assert [path.name for path in tmp_path.iterdir()] == ["two.csv"], "the part files are removed after the merge"
