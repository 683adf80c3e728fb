"""Distillation with cached teacher logits, run by tests/lightning/test_ddp.py in 1 process or under DDP in 2 (gloo,
CPU).

Usage: python tests/lightning/ddp_distill.py FOLDER DEVICES OUT [CACHE_DIR|- [DTYPE]]
FOLDER holds the tiny tokenizer, data and teacher written by tiny_text.py. CACHE_DIR is the teacher_cache_dir ("-" or
left out: none), DTYPE the teacher_cache_dtype (default float32); the cache is built in blocks of 8 examples. Each rank
writes OUT/rank<r>.pt with the cached logits, the number of examples the teacher ran on while the cache was built, the
loss of a fixed reference batch (cached and live teacher logits, before any update) and the indices and losses of the
batches it trained on. After the fit it validates once, so the validation logs run under DDP as well.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback

from lightning_distill.core.batch import student_inputs
from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.lightning.modules import DistillationModule


class Record(Callback):
    """Before each update, the KD loss of the batch with cached and with live teacher logits."""

    def __init__(self, reference: dict, teacher: torch.nn.Module) -> None:
        self.reference = reference
        self.rows: list[dict] = []
        self.reference_losses: dict = {}
        self.teacher_examples = 0
        self.cache_examples: int | None = None
        teacher.register_forward_hook(self._count, with_kwargs=True)

    def _count(self, module, args, kwargs, output) -> None:
        self.teacher_examples += int(kwargs["input_ids"].shape[0])

    def _losses(self, module: DistillationModule, batch: dict) -> tuple[float, float]:
        with torch.no_grad():
            logits = module(student_inputs(batch))
            cached = module.loss(logits, module._cached_logits(batch), batch["labels"]).loss
            live = module.loss(logits, module.teacher_logits(batch), batch["labels"]).loss
        return float(cached), float(live)

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        was_training = module.training
        module.eval()  # no dropout, so cached and live losses see the same student logits
        if batch_idx == 0:
            # the teacher has run for the cache alone so far (no validation, no sanity check)
            self.cache_examples = self.teacher_examples
            self.reference_losses = dict(zip(("cached", "live"), self._losses(module, self.reference), strict=True))
        cached, live = self._losses(module, batch)
        self.rows.append({"index": batch["index"].tolist(), "cached": cached, "live": live})
        module.train(was_training)


def main() -> None:
    folder, devices, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    cache_dir = sys.argv[4] if len(sys.argv) > 4 and sys.argv[4] != "-" else None
    dtype = sys.argv[5] if len(sys.argv) > 5 else "float32"
    pl.seed_everything(0, verbose=False)
    files = {split: str(folder / "data" / f"{split}.parquet") for split in ("train", "validation", "test")}
    data = TextClassificationDataModule(
        data_files=files, label_column="intent", tokenizer=str(folder / "tokenizer"), batch_size=8
    )
    id2label = data.id2label
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=id2label)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0, 2], id2label=id2label)
    module = DistillationModule(
        student,
        teacher,
        loss=KDLoss(temperature=2.0),
        num_classes=len(id2label),
        cache_teacher_logits=True,
        teacher_cache_dir=cache_dir,
        teacher_cache_batch_size=8,
        teacher_cache_dtype=dtype,
    )
    data.setup("fit")
    reference = next(iter(torch.utils.data.DataLoader(data.dataset("train"), batch_size=8, collate_fn=data.collator())))
    record = Record(reference, teacher)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        max_epochs=1,
        callbacks=[record],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, data)
    # one validation pass: its epoch-level logs must be synchronised across the processes (the test reads stderr for
    # Lightning's "sync_dist=True" warning); after the fit, so the teacher counts above saw the cache alone
    trainer.limit_val_batches = 1.0  # the fit ran with validation off
    trainer.validate(module, data, verbose=False)
    out.mkdir(parents=True, exist_ok=True)
    torch.save(
        {
            "world_size": trainer.world_size,
            "cache": module.cached_teacher_logits.dense(),
            "cache_examples": record.cache_examples,
            "reference": record.reference_losses,
            "rows": record.rows,
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main()
