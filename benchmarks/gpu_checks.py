"""GPU-only checks: DistillationModule under mixed precision and under FSDP (1 GPU), on tiny in-process BERTs.

Run on a machine with a CUDA GPU: ``python benchmarks/gpu_checks.py`` (every check) or ``python benchmarks/gpu_checks.py
fsdp`` (FSDP only); writes ``$OUT/gpu_checks.json`` (default ``benchmarks/results/``). Each check fits a 2-layer student
against a 4-layer teacher for 4 epochs and records: losses finite and falling, teacher unchanged, frozen and in eval
mode, student changed, no teacher key in the checkpoint, and the checkpoint validating in a fresh module.
"""

import json
import os
import sys
import tempfile

import lightning.pytorch as pl
import torch
from _results import write_result
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, Dataset
from transformers import BertConfig, BertForSequenceClassification

from lightning_distill.core.losses import KDLoss
from lightning_distill.lightning.modules import DistillationModule


def tiny_bert(seed, layers=2):
    torch.manual_seed(seed)
    config = BertConfig(
        num_hidden_layers=layers,
        hidden_size=64,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=100,
        num_labels=3,
    )
    return BertForSequenceClassification(config)


class Dicts(Dataset):
    def __init__(self, n=256):
        g = torch.Generator().manual_seed(2)
        self.ids = torch.randint(5, 100, (n, 12), generator=g)
        self.labels = self.ids[:, 0] % 3

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(12, dtype=torch.long), "labels": self.labels[i]}


class Losses(pl.Callback):
    def __init__(self):
        self.losses = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))


def check(name, **trainer_kwargs):
    teacher = tiny_bert(1, layers=4)
    # a teacher that knows the task: a few plain steps first
    opt = torch.optim.AdamW(teacher.parameters(), 3e-3)
    data = Dicts()
    for _ in range(60):
        b = data[torch.randint(0, 256, (32,))]
        loss = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"], labels=b["labels"]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    teacher_before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = tiny_bert(0)
    student_before = {k: v.clone() for k, v in student.state_dict().items()}
    module = DistillationModule(student, teacher, loss=KDLoss(2.0, 0.5), learning_rate=3e-3)
    losses = Losses()
    folder = tempfile.mkdtemp()
    ckpt = ModelCheckpoint(dirpath=folder, filename="last", save_last=False, save_top_k=1, monitor=None)
    trainer = pl.Trainer(
        max_epochs=4,
        accelerator=os.environ.get("ACC", "gpu"),
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[losses, ckpt],
        **trainer_kwargs,
    )
    trainer.fit(module, DataLoader(data, batch_size=32, shuffle=True))
    teacher_after = {k: v.detach().float().cpu() for k, v in module.teacher.state_dict().items()}
    student_after = {k: v.detach().float().cpu() for k, v in module.student.state_dict().items()}
    saved = torch.load(ckpt.best_model_path, map_location="cpu", weights_only=True)
    keys = list(saved["state_dict"])
    row = {
        "check": name,
        "trainer": {k: str(v) for k, v in trainer_kwargs.items()},
        "first_losses": [round(x, 4) for x in losses.losses[:3]],
        "last_losses": [round(x, 4) for x in losses.losses[-3:]],
        "all_finite": all(torch.isfinite(torch.tensor(losses.losses))),
        "teacher_unchanged": all(torch.equal(v.float().cpu(), teacher_after[k]) for k, v in teacher_before.items()),
        "teacher_requires_grad": any(p.requires_grad for p in module.teacher.parameters()),
        "teacher_training_mode": module.teacher.training,
        "student_changed": any(not torch.equal(v.float().cpu(), student_after[k]) for k, v in student_before.items()),
        "checkpoint_keys": len(keys),
        "teacher_keys_in_checkpoint": sum(k.startswith("teacher.") for k in keys),
    }
    # the checkpoint loads back into a fresh module and tests
    fresh = DistillationModule(tiny_bert(5), teacher, loss=KDLoss(2.0, 0.5))
    tester = pl.Trainer(
        accelerator=os.environ.get("ACC", "gpu"),
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    result = tester.validate(fresh, DataLoader(data, batch_size=64), ckpt_path=ckpt.best_model_path, verbose=False)
    row["reloaded_val"] = {k: round(float(v), 4) for k, v in result[0].items()}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    rows = []
    for name, kwargs in (
        [
            ("fsdp bf16-mixed", {"strategy": "fsdp", "precision": "bf16-mixed"}),
            ("fsdp fp32", {"strategy": "fsdp"}),
        ]
        if len(sys.argv) > 1
        else [
            ("bf16-mixed", {"precision": "bf16-mixed"}),
            ("16-mixed", {"precision": "16-mixed"}),
            ("fsdp bf16-mixed", {"strategy": "fsdp", "precision": "bf16-mixed"}),
            ("fsdp fp32", {"strategy": "fsdp"}),
        ]
    ):
        try:
            rows.append(check(name, **kwargs))
        except Exception as error:  # report and go on to the next check
            import traceback

            traceback.print_exc()
            rows.append({"check": name, "error": f"{type(error).__name__}: {error}"[:2000]})
            print(json.dumps(rows[-1]), flush=True)
    record = {
        "torch": torch.__version__,
        "lightning": pl.__version__,
        "device": torch.cuda.get_device_name(0),
        "rows": rows,
    }
    write_result(os.path.join(os.environ.get("OUT", "benchmarks/results"), "gpu_checks.json"), record, indent=1)
