"""Distillation under DDP where rank 1 cannot find the teacher checkpoint; run by tests/lightning/test_ddp.py.

Usage: python tests/lightning/ddp_missing_teacher.py TEACHER_STATE_DICT
Rank 0 gets the path of a real file; rank 1 gets a path that does not exist on its file system, as a node without the
shared storage would. Both ranks must stop with the same clear error instead of waiting for each other.
"""

from __future__ import annotations

import os
import sys

import lightning.pytorch as pl

from lightning_distill.core.models import MLP
from lightning_distill.lightning.data import DigitsDataModule
from lightning_distill.lightning.modules import DistillationModule


def main() -> None:
    path = sys.argv[1] if os.environ.get("LOCAL_RANK", "0") == "0" else sys.argv[1] + ".not-on-this-node"
    teacher = MLP(num_classes=10, in_features=64, hidden_sizes=[16])
    module = DistillationModule(MLP(num_classes=10, in_features=64, hidden_sizes=[8]), teacher, teacher_checkpoint=path)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, DigitsDataModule())


if __name__ == "__main__":
    main()
