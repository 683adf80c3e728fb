"""The teacher's accuracy is measured before distillation with plain DataLoaders too, and a skip is said."""

import csv
from pathlib import Path

import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.lightning.modules import DistillationModule


def _loader(seed: int, n: int = 40) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 12, generator=generator)
    return DataLoader(TensorDataset(x, x[:, :4].argmax(1)), batch_size=8)


def _module() -> tuple[DistillationModule, MLP]:
    torch.manual_seed(0)
    teacher = MLP(num_classes=4, in_features=12, hidden_sizes=[16])
    return DistillationModule(MLP(num_classes=4, in_features=12, hidden_sizes=[8]), teacher), teacher


@pytest.mark.parametrize(
    "trainer_kwargs",
    [{}, {"num_sanity_val_steps": 0, "check_val_every_n_epoch": 2}],  # the second: Lightning sets up no val data yet
)
def test_plain_dataloaders_measure_and_log_the_teachers_validation_accuracy(
    tmp_path: Path, trainer_kwargs: dict
) -> None:
    module, teacher = _module()
    val = _loader(seed=2)
    x, y = val.dataset.tensors
    with torch.no_grad():
        expected = float((teacher.eval()(x).argmax(1) == y).float().mean())
    trainer = tiny_trainer(logger=CSVLogger(tmp_path, name="run"), **trainer_kwargs)
    trainer.fit(module, _loader(seed=1), val)
    assert module.teacher_val_acc == pytest.approx(expected)
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as file:
        logged = [float(row["teacher/val_acc"]) for row in csv.DictReader(file) if row.get("teacher/val_acc")]
    assert logged == [pytest.approx(expected)]


def test_without_validation_data_the_log_says_the_teacher_check_was_skipped_and_why(
    lightning_log: pytest.LogCaptureFixture,
) -> None:
    module, _ = _module()
    tiny_trainer().fit(module, _loader(seed=1))
    assert module.teacher_val_acc is None
    assert "teacher sanity check skipped (no teacher/val_acc): the fit has no validation data" in lightning_log.text


class _PlainCNN(torch.nn.Module):
    """A user's CNN: 10 classes, said nowhere but in the width of its logits (no ``num_classes``, no config)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(), torch.nn.Flatten())
        self.head = torch.nn.Linear(4 * 6 * 6, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def test_near_chance_warning_reads_the_class_count_from_the_teachers_logits() -> None:
    torch.manual_seed(0)
    teacher = _PlainCNN()  # untrained: near-random weights
    assert not hasattr(teacher, "num_classes")
    module = DistillationModule(_PlainCNN(), teacher)  # no num_classes given either
    generator = torch.Generator().manual_seed(3)
    x, y = torch.randn(200, 1, 8, 8, generator=generator), torch.randint(0, 10, (200,), generator=generator)
    loader = DataLoader(TensorDataset(x, y), batch_size=50)
    with pytest.warns(UserWarning, match=r"validation accuracy is 0\.\d+, close to chance for 10 classes"):
        tiny_trainer().fit(module, loader, loader)
    assert module.teacher_val_acc < 0.2
