"""Predictions written by ``PredictionWriter`` in 1 process or under DDP in 2 (gloo, CPU), run by
tests/lightning/callbacks/test_prediction_writer.py.

Usage: python tests/lightning/ddp_predict.py DEVICES OUT_CSV
37 examples in batches of 5: under DDP the sampler gives each process 19, repeating one example, which the writer must
write once. The model is seeded, so every run predicts the same.
"""

from __future__ import annotations

import sys

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.lightning.callbacks import PredictionWriter
from lightning_distill.lightning.modules import ClassifierModule


class Examples(pl.LightningDataModule):
    id2label = {0: "a", 1: "b", 2: "c"}

    def predict_dataloader(self) -> DataLoader:
        features = torch.randn(37, 4, generator=torch.Generator().manual_seed(1))
        return DataLoader(TensorDataset(features, torch.zeros(37, dtype=torch.long)), batch_size=5)


if __name__ == "__main__":
    devices, out = int(sys.argv[1]), sys.argv[2]
    torch.manual_seed(0)
    module = ClassifierModule(MLP(num_classes=3, in_features=4, hidden_sizes=[8]), num_classes=3)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        callbacks=[PredictionWriter(path=out, probabilities=True)],
    )
    trainer.predict(module, datamodule=Examples(), return_predictions=False)
