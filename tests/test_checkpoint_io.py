"""``DistillTrainer`` saves checkpoints atomically: a failed save (a full disk) keeps the previous one loadable."""

from __future__ import annotations

import lightning.pytorch as pl
import pytest
import torch
from full_disk import Disk, disk_fixture  # noqa: F401 (the fixture `disk`)
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.atomic import WriteError
from lightning_distill.core.safe_load import load_file
from lightning_distill.lightning.checkpoint_io import AtomicCheckpointIO
from lightning_distill.lightning.trainer import DistillTrainer


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(4, 2)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, labels = batch
        return nn.functional.cross_entropy(self.layer(inputs), labels)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _trainer(folder, **kwargs) -> DistillTrainer:
    return DistillTrainer(
        accelerator="cpu",
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=folder,
        **kwargs,
    )


def test_a_checkpoint_save_on_a_full_disk_keeps_the_previous_best_ckpt_loadable(disk: Disk) -> None:
    model = _Tiny()
    data = DataLoader(TensorDataset(torch.randn(8, 4), torch.randint(0, 2, (8,))), batch_size=4)
    trainer = _trainer(disk.folder, callbacks=[ModelCheckpoint(dirpath=disk.folder / "checkpoints", filename="best")])
    trainer.fit(model, data)
    best = disk.folder / "checkpoints" / "best.ckpt"
    saved = {k: v.clone() for k, v in load_file(best)["state_dict"].items()}
    with torch.no_grad():
        model.layer.weight.add_(1.0)
    model.register_buffer("statistics", torch.ones(20_000))  # larger: written in place, it would be cut short
    disk.fill()
    with pytest.raises(WriteError, match=r"no space left on device while writing .*best\.ckpt"):
        trainer.save_checkpoint(best)
    disk.free()
    assert disk.files() == ["checkpoints", "checkpoints/best.ckpt"]
    for key, value in load_file(best)["state_dict"].items():
        assert torch.equal(value, saved[key]), key
    trainer.save_checkpoint(best)  # with space again, the next save proceeds
    assert torch.equal(load_file(best)["state_dict"]["layer.weight"], model.layer.weight)


def test_atomic_checkpoints_are_the_default_and_a_given_checkpoint_io_is_kept(tmp_path) -> None:
    assert type(_trainer(tmp_path).strategy.checkpoint_io) is AtomicCheckpointIO
    given = TorchCheckpointIO()
    assert _trainer(tmp_path, plugins=[given]).strategy.checkpoint_io is given
