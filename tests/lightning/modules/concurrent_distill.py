"""One distillation fit with cached teacher logits, run by tests/lightning/modules/test_teacher_cache_files.py in
several processes at once that share a teacher cache and a token cache.

Usage: python tests/lightning/modules/concurrent_distill.py FOLDER TEACHER_CACHE TOKEN_CACHE OUT READY_DIR PROCESSES
FOLDER holds the tiny tokenizer, data and teacher written by tiny_text.py. The process writes READY_DIR/<pid> once its
models are built and waits until PROCESSES such files are there, so that the fits start together; the teacher sleeps
0.2 s per batch, so that building the cache takes long enough for the processes to meet there. OUT gets the student's
state dict, the cached logits and the number of examples the teacher ran on.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import torch

from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.lightning.modules import DistillationModule


def main() -> None:
    folder, teacher_cache, token_cache, out = (Path(arg) for arg in sys.argv[1:5])
    ready, processes = Path(sys.argv[5]), int(sys.argv[6])
    torch.set_num_threads(1)
    pl.seed_everything(0, verbose=False)
    files = {split: str(folder / "data" / f"{split}.parquet") for split in ("train", "validation", "test")}
    data = TextClassificationDataModule(
        data_files=files,
        label_column="intent",
        tokenizer=str(folder / "tokenizer"),
        batch_size=8,
        token_cache_dir=str(token_cache),
    )
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=data.id2label)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0, 2], id2label=data.id2label)
    examples = []

    def slow(module: torch.nn.Module, args: tuple, kwargs: dict, output: torch.Tensor) -> None:
        examples.append(int(kwargs["input_ids"].shape[0]))
        time.sleep(0.2)

    teacher.register_forward_hook(slow, with_kwargs=True)
    module = DistillationModule(
        student,
        teacher,
        loss=KDLoss(temperature=2.0),
        num_classes=3,
        cache_teacher_logits=True,
        teacher_cache_dir=str(teacher_cache),
        teacher_cache_batch_size=8,
    )
    ready.mkdir(parents=True, exist_ok=True)
    (ready / str(os.getpid())).touch()
    while len(list(ready.iterdir())) < processes:
        time.sleep(0.01)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    result = {"student": student.state_dict(), "cache": module.cached_teacher_logits.dense(), "ran": sum(examples)}
    torch.save(result, out)


if __name__ == "__main__":
    main()
