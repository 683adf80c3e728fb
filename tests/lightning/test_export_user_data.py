"""``DistillTrainer.export`` with a user's own data module: examples from its dataloaders, int8 calibrated on another
split than the measured one, and clear errors where the data module cannot give examples."""

import json
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.export import load_exported
from lightning_distill.lightning.trainer import DistillTrainer


class UserModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


class LoadersOnly(pl.LightningDataModule):
    """Dict batches from its dataloaders, no benchmark_data nor encode; ``splits`` says which loaders it has."""

    def __init__(self, splits: tuple[str, ...]) -> None:
        super().__init__()
        self.splits = splits
        data = TensorDataset(torch.randn(40, 1, 4, 4), torch.randint(0, 3, (40,)))
        self.loader = DataLoader(data, batch_size=8)
        for split in splits:
            setattr(self, f"{split}_dataloader", self._loader)

    def _loader(self) -> DataLoader:
        return DataLoader([{"pixels": x, "label": y} for x, y in self.loader.dataset], batch_size=8)


def _export(datamodule: pl.LightningDataModule, folder: Path, ckpt: str, **options) -> None:
    trainer = DistillTrainer(accelerator="cpu", logger=False, enable_progress_bar=False)
    trainer.export(UserModule(), datamodule, ckpt_path=ckpt, folder=str(folder), **options)


@pytest.fixture
def ckpt(tmp_path: Path) -> str:
    path = tmp_path / "user.ckpt"
    torch.save({"state_dict": UserModule().state_dict()}, path)
    return str(path)


def test_a_data_module_of_loaders_only_exports_calibrated_on_validation(tmp_path: Path, ckpt: str) -> None:
    _export(LoadersOnly(("train", "val", "test")), tmp_path / "out", ckpt)
    info = json.loads((tmp_path / "out" / "export_info.json").read_text())
    assert info["provenance"]["int8 calibrated on"] == "the first 32 examples of the 'val' split"
    assert "'val' split" in (tmp_path / "out" / "README.md").read_text()
    assert load_exported(tmp_path / "out").logits(torch.randn(2, 1, 4, 4)).shape == (2, 3)


def test_without_other_splits_int8_is_calibrated_on_the_measured_one_with_a_warning(tmp_path: Path, ckpt) -> None:
    with pytest.warns(UserWarning, match=r"no examples in val nor train, so the static int8 graph is calibrated on "):
        _export(LoadersOnly(("test",)), tmp_path / "out", ckpt)
    info = json.loads((tmp_path / "out" / "export_info.json").read_text())
    assert info["provenance"]["int8 calibrated on"] == "the first 32 examples of the 'test' split"


def test_a_data_module_without_examples_is_refused_before_the_checkpoint_is_loaded(tmp_path: Path) -> None:
    missing = str(tmp_path / "not_there.ckpt")  # loading it would fail otherwise
    with pytest.raises(ValueError, match=r"no benchmark_data nor a test_dataloader for --split test: add to "):
        _export(LoadersOnly(("train",)), tmp_path / "out", missing)
    with pytest.raises(ValueError, match=r"--measure benchmarks each graph on benchmark_data\('test'\): add to "):
        _export(LoadersOnly(("test",)), tmp_path / "out", missing, measure=True)
    assert not (tmp_path / "out").exists()
