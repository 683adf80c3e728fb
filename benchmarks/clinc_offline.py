"""The offline CLINC150 recipe on CPU: MiniLM-L6 teacher, 3-layer student fine-tuned plainly and distilled.

Writes ``benchmarks/results/clinc_offline.json`` with the teacher's validation and test accuracy, the 3-layer student's
accuracy after plain fine-tuning and after distillation (same epochs, seed and initialisation: layers 0, 2, 4 of the
fine-tuned teacher, or of the pretrained MiniLM with ``--student-init pretrained``), and the training-epoch wall time
of plain fine-tuning, distillation without the teacher-logits cache and distillation with it. Saves the trained models
with ``save_pretrained`` under ``runs/clinc_offline/``; ``--teacher-from`` reuses a teacher saved by an earlier run.

Run (one benchmark at a time on the machine):
    flock /tmp/bench.lock python benchmarks/clinc_offline.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from _results import write_result
from _train import quiet_trainer
from lightning.pytorch.loggers import CSVLogger

from lightning_distill.core.atomic import replace_folder, write_json
from lightning_distill.core.benchmark import benchmark_module
from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule

SHARED = Path(__file__).resolve().parents[2] / "shared"
RESULTS = Path(__file__).resolve().parent / "results" / "clinc_offline.json"


class EpochTimer(pl.Callback):
    """Wall time of each training epoch (validation is off during these fits, so it is training alone)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.load_average: list[float] = []  # other processes on the machine slow epochs down; kept for the record
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)
        self.load_average.append(os.getloadavg()[0])


def fit(
    module: pl.LightningModule,
    data: TextClassificationDataModule,
    epochs: int,
    name: str,
    args: Any,
    fraction: float = 1.0,
) -> EpochTimer:
    timer = EpochTimer()
    trainer = quiet_trainer(
        epochs,
        limit_train_batches=fraction,
        limit_val_batches=0,
        logger=CSVLogger(args.runs, name=f"logs_{name}"),
        log_every_n_steps=20,
        callbacks=[timer],
    )
    trainer.fit(module, data)
    print(f"{name}: epoch seconds {[round(s, 1) for s in timer.seconds]}", flush=True)
    return timer


@torch.no_grad()
def accuracy(model: torch.nn.Module, data: TextClassificationDataModule, split: str) -> float:
    model.eval()
    correct = total = 0
    loader = torch.utils.data.DataLoader(data.dataset(split), batch_size=256, collate_fn=data.collator())
    for batch in loader:
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "index")}
        correct += int((model(**inputs).logits.argmax(-1) == batch["labels"]).sum())
        total += len(batch["labels"])
    return correct / total


def save(model: TransformerClassifier, path: Path, data: TextClassificationDataModule) -> None:
    """``save_pretrained`` into a fresh folder, then swap it in, so other jobs never read a half-written model."""
    with replace_folder(path) as fresh:
        model.save_pretrained(fresh, tokenizer=data.tokenizer)


def measured(model: TransformerClassifier, path: Path, data: TextClassificationDataModule) -> dict[str, Any]:
    """Where a model is saved, its depth, and its validation and test accuracy."""
    return {
        "path": str(path),
        "layers": model.config.num_hidden_layers,
        "val_accuracy": accuracy(model, data, "val"),
        "test_accuracy": accuracy(model, data, "test"),
    }


def timing(timer: Any, epochs: int) -> dict[str, Any]:
    """The epoch times of a fit and the load average during each."""
    return {"epochs": epochs, "epoch_seconds": timer.seconds, "epoch_load_average": timer.load_average}


def record(results: dict[str, Any], key: str, row: dict[str, Any]) -> None:
    """Add ``row`` under ``key``, write the results file and print the row (a stopped run keeps what it measured)."""
    results[key] = row
    write(results)
    print(row, flush=True)


def write(results: dict[str, Any]) -> None:
    write_result(results["settings"]["output"], results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models" / "minilm-l6-h384-uncased"))
    parser.add_argument("--data", default=str(SHARED / "data" / "clinc_oos" / "plus"))
    parser.add_argument("--runs", default="runs/clinc_offline")
    # Short schedules keep the whole run near half an hour on 2 shared cores.
    parser.add_argument("--teacher-epochs", type=int, default=2)
    parser.add_argument("--student-epochs", type=int, default=4)
    parser.add_argument("--student-init", choices=["teacher", "pretrained"], default="teacher")
    parser.add_argument(
        "--teacher-from", default=None, help="folder of a teacher saved by an earlier run: not retrained"
    )
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--teacher-lr", type=float, default=1.5e-4)
    parser.add_argument("--student-lr", type=float, default=2e-4)
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument("--soft-target-weight", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS))
    parser.add_argument("--latency", action="store_true", help="also measure batch-1 latency (with tokenization)")
    parser.add_argument(
        "--finish-by",
        default=None,
        help="UTC time HH:MM; where the uncached-distillation epoch would end later, time a fraction of it and scale",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = Path(args.runs)
    started = time.time()

    data = TextClassificationDataModule(
        tokenizer=args.model,
        data_files={split: f"{args.data}/{split}.parquet" for split in ("train", "validation", "test")},
        label_column="intent",
        max_length=args.max_length,
        batch_size=args.batch_size,
        eval_batch_size=256,
        group_by_length=True,  # batches of similar-length queries: little padding, about 2x faster steps on CPU
    )
    data.setup()
    results: dict[str, Any] = {
        "command": "flock /tmp/bench.lock python " + " ".join(sys.argv),
        "settings": vars(args) | {"train_examples": len(data.dataset("train")), "num_classes": data.num_classes},
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_at_start": os.getloadavg(),
        },
    }
    labels = {"num_classes": data.num_classes, "id2label": data.id2label}

    # 1. Teacher: MiniLM-L6 fine-tuned on CLINC150 plus.
    pl.seed_everything(args.seed)
    if args.teacher_from:
        teacher_path = Path(args.teacher_from)
        teacher = TransformerClassifier(str(teacher_path), **labels)
        training = json.loads((teacher_path / "training.json").read_text())
    else:
        teacher_path = runs / "teacher"
        teacher = TransformerClassifier(args.model, **labels)
        module = ClassifierModule(teacher, data.num_classes, learning_rate=args.teacher_lr, warmup_fraction=0.06)
        timer = fit(module, data, args.teacher_epochs, "teacher", args)
        training = {**timing(timer, args.teacher_epochs), "learning_rate": args.teacher_lr}
        with replace_folder(teacher_path) as fresh:
            teacher.save_pretrained(fresh, tokenizer=data.tokenizer)
            write_json(fresh / "training.json", training)
    record(
        results,
        "teacher",
        {**measured(teacher, teacher_path, data), "trained_in_this_run": not args.teacher_from, **training},
    )

    def student() -> StudentFromTeacher:
        pl.seed_everything(args.seed)  # same head initialisation and data order for every student
        source = str(teacher_path) if args.student_init == "teacher" else args.model
        return StudentFromTeacher(source, layers=args.layers, **labels)

    # 2. Plain fine-tuning of the layer-dropped student.
    plain = student()
    module = ClassifierModule(plain, data.num_classes, learning_rate=args.student_lr, warmup_fraction=0.06)
    plain_timer = fit(module, data, args.student_epochs, "student_plain", args)
    save(plain, runs / "student_plain", data)
    record(
        results,
        "student_plain",
        {**measured(plain, runs / "student_plain", data), **timing(plain_timer, args.student_epochs)},
    )

    # 3. Distillation with cached teacher logits (the recipe's student).
    loss = KDLoss(temperature=args.temperature, soft_target_weight=args.soft_target_weight)

    def distillation(model: StudentFromTeacher, cache: bool) -> DistillationModule:
        return DistillationModule(
            model,
            teacher,
            loss=loss,
            num_classes=data.num_classes,
            learning_rate=args.student_lr,
            warmup_fraction=0.06,
            cache_teacher_logits=cache,
        )

    distilled = student()
    module = distillation(distilled, cache=True)
    cached_timer = fit(module, data, args.student_epochs, "student_distilled", args)
    save(distilled, runs / "student_distilled", data)
    record(
        results,
        "student_distilled",
        {
            **measured(distilled, runs / "student_distilled", data),
            **timing(cached_timer, args.student_epochs),
            "teacher_cache_seconds": module.teacher_cache_seconds,
            "teacher_cache_key": module.teacher_cache_key,
            "loss": {"temperature": args.temperature, "soft_target_weight": args.soft_target_weight},
        },
    )

    def mean(values: list[float]) -> float:
        return sum(values) / len(values)

    plain_epoch, cached_epoch = mean(plain_timer.seconds), mean(cached_timer.seconds)
    gap = results["teacher"]["test_accuracy"] - results["student_distilled"]["test_accuracy"]
    results["epoch_seconds"] = {
        "plain_fine_tuning": plain_epoch,
        "distillation_with_cache": cached_epoch,
        "teacher_cache_build_once": results["student_distilled"]["teacher_cache_seconds"],
        "cached_over_plain": cached_epoch / plain_epoch,
    }
    results["targets"] = {
        "distilled_within_2_points_of_teacher_on_test": gap <= 0.02,
        "test_gap_points": round(100 * gap, 2),
        "cached_epoch_at_most_1_15x_plain": cached_epoch <= 1.15 * plain_epoch,
    }
    write(results)

    # 4. One epoch of distillation without the cache, for its epoch time only. It costs about a plain epoch plus one
    # teacher pass over the training set; where that would end after --finish-by, a fraction of the epoch is timed.
    fraction = 1.0
    if args.finish_by:
        hour, minute = (int(x) for x in args.finish_by.split(":"))
        now = time.gmtime()
        left = (hour * 60 + minute - now.tm_hour * 60 - now.tm_min) * 60 - now.tm_sec
        estimate = plain_epoch + results["student_distilled"]["teacher_cache_seconds"]
        if estimate > 0.9 * left:
            fraction = max(0.1, round(0.8 * left / estimate, 2))
    module = distillation(student(), cache=False)
    uncached_timer = fit(module, data, 1, "student_distilled_uncached", args, fraction=fraction)
    uncached_epoch = uncached_timer.seconds[0] / fraction
    results["epoch_seconds"] |= {
        "distillation_without_cache": uncached_epoch,
        "distillation_without_cache_timed_fraction": fraction,  # < 1: timed over that share of an epoch, scaled up
        "uncached_over_plain": uncached_epoch / plain_epoch,
        "uncached_epoch_load_average": uncached_timer.load_average[0],
    }
    write(results)

    # 5. Optionally, deployment figures: batch-1 latency includes tokenizing the query.
    if args.latency:
        rows = [
            benchmark_module(model, data, name=f"clinc_offline/{name}", artifact_path=runs / name / "model.safetensors")
            for name, model in (("teacher", teacher), ("student_plain", plain), ("student_distilled", distilled))
        ]
        results["benchmark_rows"] = [row.to_dict() for row in rows]
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["total_minutes"] = (time.time() - started) / 60
    write(results)
    print(json.dumps({k: results[k] for k in ("epoch_seconds", "targets")}, indent=2), flush=True)


if __name__ == "__main__":
    main()
