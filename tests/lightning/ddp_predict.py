"""Predictions written by ``PredictionWriter`` under DDP in 2 processes (gloo, CPU), run by
tests/lightning/callbacks/test_prediction_writer.py, which imports :func:`build` to compute the expected rows in its
own process.

Usage: python tests/lightning/ddp_predict.py DEVICES OUT_CSV
11 examples in batches of 3: Lightning's ``UnrepeatedDistributedSamplerWrapper`` gives the processes 6 and 5 of them
(none repeated), and the writer must merge both processes' rows in dataset order. The model is seeded, so every run
predicts the same.
"""

from __future__ import annotations

import sys

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.lightning.callbacks import PredictionWriter
from lightning_distill.lightning.modules import ClassifierModule

EXAMPLES = 11


class Examples(pl.LightningDataModule):
    id2label = {0: "a", 1: "b", 2: "c"}

    def predict_dataloader(self) -> DataLoader:
        features = torch.randn(EXAMPLES, 4, generator=torch.Generator().manual_seed(1))
        return DataLoader(TensorDataset(features, torch.zeros(EXAMPLES, dtype=torch.long)), batch_size=3)


def build() -> tuple[ClassifierModule, Examples]:
    """The seeded module and the data module every run predicts with."""
    torch.manual_seed(0)
    return ClassifierModule(MLP(num_classes=3, in_features=4, hidden_sizes=[8]), num_classes=3), Examples()


if __name__ == "__main__":
    devices, out = int(sys.argv[1]), sys.argv[2]
    module, data = build()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[PredictionWriter(path=out, probabilities=True)],
    )
    trainer.predict(module, datamodule=data, return_predictions=False)
