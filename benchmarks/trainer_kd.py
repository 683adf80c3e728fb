"""The texts' ``transformers.Trainer`` distillation recipe against this project's modules, same settings, one run.

"Natural Language Processing with Transformers" (ch. 8) distils with a ``Trainer`` subclass whose ``compute_loss``
runs the teacher live each step: ``alpha * CE + (1 - alpha) * T^2 * KL``. This script fits, on identical models (one
student copied for every contender), data, batch size, learning rate, schedule and threads:

- ``trainer_plain``: ``Trainer`` fine-tuning the student on the labels;
- ``trainer_kd``: the ``Trainer`` subclass, teacher live;
- ``project_plain``: ``ClassifierModule``, no length grouping (the Trainer's batches, for a like-for-like step);
- ``project_plain_defaults``: ``ClassifierModule`` with the data module's defaults (length grouping);
- ``project_kd_live``: ``DistillationModule``, teacher live;
- ``project_kd``: ``DistillationModule`` with its defaults (teacher logits cached in float16, length grouping).

Timing (``--steps``): each contender runs ``--steps`` optimizer steps; seconds per step is the mean wall time between
consecutive step ends after the first ``--skip`` (data loading, forward, backward, optimizer). The per-epoch estimate
is steps per epoch times that, plus, for the cache, its build time divided by ``--amortise`` epochs.
Accuracy (``--epochs``, 0 to skip): ``trainer_kd`` and ``project_kd`` are fitted for that many whole epochs (their
own validation passes included in the wall time), then both students are scored on the validation split by one
function, with the same batches.

    python benchmarks/trainer_kd.py --teacher runs/clinc_offline/clinc_offline/teacher/model [--steps 40] [--epochs 4]

The teacher is a fine-tuned ``save_pretrained`` classifier folder (the recipe's ``teacher/model``); the student keeps
its layers ``--layers`` (0 2 4, the issue's setting; the CLINC recipe now keeps 1 3 5). Both sides clip gradients at
``--max-grad-norm`` (1.0, the Trainer's default), and both run the teacher on the validation split each epoch (the
Trainer's evaluation calls ``compute_loss``; the module logs teacher agreement). Needs ``accelerate``
(``pip install -e ".[dev]"``).
Writes benchmarks/results/trainer_kd_seed<seed>.json (or --output) and prints one row per contender.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
import transformers
from _results import write_result
from datasets import load_dataset
from torch import nn
from transformers import AutoTokenizer, DataCollatorWithPadding, Trainer, TrainerCallback, TrainingArguments

from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
_CACHED = ("project_kd", "project_kd_ungrouped")  # the DistillationModule fits that cache the teacher's logits
CONTENDERS = (
    "trainer_plain",
    "trainer_kd",
    "project_plain",
    "project_plain_defaults",
    "project_kd_live",
    "project_kd",
)


class DistillationTrainer(Trainer):
    """The texts' recipe: cross-entropy on the labels plus the teacher's temperature-softened KL, teacher live."""

    def __init__(self, *args: Any, teacher_model: nn.Module, alpha: float, temperature: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.teacher_model = teacher_model.eval()
        self.alpha, self.temperature = alpha, temperature

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        with torch.no_grad():
            teacher_logits = self.teacher_model(**inputs).logits
        t = self.temperature
        kd = F.kl_div(
            F.log_softmax(outputs.logits / t, dim=-1), F.softmax(teacher_logits / t, dim=-1), reduction="batchmean"
        )
        loss = self.alpha * outputs.loss + (1 - self.alpha) * t**2 * kd
        return (loss, outputs) if return_outputs else loss


class _HFStepClock(TrainerCallback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_step_end(self, args, state, control, **kwargs):
        self.ends.append(time.perf_counter())


class _PLStepClock(pl.Callback):
    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.perf_counter())


def _per_step(ends: list[float], skip: int) -> float:
    if len(ends) <= skip + 1:
        raise ValueError(f"only {len(ends)} steps ran; give --steps above --skip + 1 ({skip + 1})")
    return (ends[-1] - ends[skip]) / (len(ends) - 1 - skip)


def _hf_data(args: argparse.Namespace, tokenizer: Any) -> dict[str, Any]:
    """The texts' pipeline: ``datasets`` map with truncation; padding per batch by the collator."""
    files = {split: str(Path(args.data) / f"{split}.parquet") for split in ("train", "validation")}
    raw = load_dataset("parquet", data_files=files)
    encoded = raw.map(
        lambda b: tokenizer(b["text"], truncation=True, max_length=args.max_length),
        batched=True,
        remove_columns=["text"],
    )
    return encoded.rename_column("intent", "labels")


def _trainer_fit(name: str, args: argparse.Namespace, student: nn.Module, teacher: nn.Module, data: Any,
                 tokenizer: Any, steps: int | None, out: Path) -> dict[str, Any]:  # fmt: skip
    clock = _HFStepClock()
    total = steps or (args.epochs * -(-len(data["train"]) // args.batch_size))
    warmup = max(1, int(total * args.warmup_fraction)) if args.warmup_fraction > 0 else 0
    schedule = "linear" if args.warmup_fraction > 0 else "constant"  # our modules: constant without a warm-up
    training = TrainingArguments(
        output_dir=str(out / name), per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size, learning_rate=args.lr, num_train_epochs=args.epochs or 1,
        max_steps=steps or -1, warmup_steps=warmup, lr_scheduler_type=schedule,
        eval_strategy="no" if steps else "epoch", save_strategy="no", report_to=[], seed=args.seed, use_cpu=True,
        logging_steps=50, max_grad_norm=args.max_grad_norm,
    )  # fmt: skip
    common = {"model": student, "args": training, "train_dataset": data["train"], "callbacks": [clock],
              "eval_dataset": data["validation"], "data_collator": DataCollatorWithPadding(tokenizer)}  # fmt: skip
    if name == "trainer_kd":
        trainer = DistillationTrainer(**common, teacher_model=teacher, alpha=args.alpha, temperature=args.temperature)
    else:
        trainer = Trainer(**common)
    start = time.perf_counter()
    trainer.train()
    return {"fit_seconds": time.perf_counter() - start, "ends": clock.ends, "threads": torch.get_num_threads(),
            "steps_per_epoch": -(-len(data["train"]) // args.batch_size), "model": student}  # fmt: skip


def _project_fit(name: str, args: argparse.Namespace, student: nn.Module, teacher: nn.Module,
                 steps: int | None, out: Path) -> dict[str, Any]:  # fmt: skip
    pl.seed_everything(args.seed, verbose=False)
    data_options: dict[str, Any] = {}
    if name in ("project_plain", "project_kd_live", "project_kd_ungrouped"):
        data_options["group_by_length"] = False  # the Trainer's batches: a like-for-like step
    data = _data_module(args, **data_options)
    if name.startswith("project_plain"):
        module: pl.LightningModule = ClassifierModule(
            student, learning_rate=args.lr, warmup_fraction=args.warmup_fraction
        )
    else:
        module = DistillationModule(
            student, teacher, loss=KDLoss(args.temperature, 1 - args.alpha), learning_rate=args.lr,
            warmup_fraction=args.warmup_fraction, cache_teacher_logits=name in _CACHED,
            teacher_cache_dir=str(out / "teacher_logits"),
        )  # fmt: skip
    clock = _PLStepClock()
    trainer = pl.Trainer(
        max_epochs=args.epochs or 1, max_steps=steps or -1, accelerator="cpu", devices=1, callbacks=[clock],
        logger=pl.loggers.CSVLogger(str(out), name=name), log_every_n_steps=50, enable_checkpointing=False,
        enable_model_summary=False, num_sanity_val_steps=0, limit_val_batches=0 if steps else None,
        gradient_clip_val=args.max_grad_norm or None,
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(module, datamodule=data)
    result = {"fit_seconds": time.perf_counter() - start, "ends": clock.ends, "threads": torch.get_num_threads(),
              "steps_per_epoch": len(data.train_dataloader()), "model": student}  # fmt: skip
    if name in _CACHED:
        result["cache_seconds"] = module.teacher_cache_seconds
    return result


def _data_module(args: argparse.Namespace, **options: Any) -> TextClassificationDataModule:
    files = {split: str(Path(args.data) / f"{split}.parquet") for split in ("train", "validation", "test")}
    data = TextClassificationDataModule(
        args.tokenizer, data_files=files, label_column="intent", max_length=args.max_length,
        batch_size=args.batch_size, labels=args.labels, **options,
    )  # fmt: skip
    return data


def validation_accuracy(model: nn.Module, args: argparse.Namespace) -> float:
    """Top-1 accuracy of ``model`` (a Hugging Face classifier or our wrapper) on the validation split."""
    data = _data_module(args)
    data.setup("validate")
    model = model.eval()
    correct = total = 0
    with torch.inference_mode():
        for batch in data.val_dataloader():
            inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
            logits = model(**inputs).logits
            correct += int((logits.argmax(-1) == batch["labels"]).sum())
            total += len(batch["labels"])
    return correct / total


def _summary(name: str, run: dict[str, Any], args: argparse.Namespace, amortise: int | None) -> dict[str, Any]:
    per_step = _per_step(run["ends"], args.skip)
    row = {"contender": name, "seconds_per_step": per_step, "steps_per_epoch": run["steps_per_epoch"],
           "threads": run["threads"], "steps_timed": len(run["ends"]) - 1 - args.skip}  # fmt: skip
    epoch = per_step * run["steps_per_epoch"]
    if "cache_seconds" in run:
        row["cache_seconds"] = run["cache_seconds"]
        if amortise:
            epoch += run["cache_seconds"] / amortise
    row["seconds_per_epoch_estimate"] = epoch
    return row


def main() -> None:
    args = _arguments()
    torch.set_num_threads(args.threads)
    teacher = TransformerClassifier(args.teacher).eval()
    args.labels = [teacher.config.id2label[i] for i in range(teacher.num_classes)]
    student = StudentFromTeacher(args.teacher, layers=args.layers)
    if args.dropout is not None:
        from lightning_distill.core.models.dropout import set_dropout

        set_dropout(student, args.dropout)
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    hf_data = _hf_data(args, tokenizer)
    result: dict[str, Any] = {"settings": _settings(args), "timing": [], "accuracy": []}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for name in [c for c in CONTENDERS if c in args.only] if args.steps else []:
            run = _fit(name, args, student, teacher, hf_data, tokenizer, args.steps, out / "timing")
            result["timing"].append(_summary(name, run, args, args.amortise))
            print(json.dumps(result["timing"][-1]), flush=True)
        for name in args.fits if args.epochs else ():
            run = _fit(name, args, student, teacher, hf_data, tokenizer, None, out / "epochs")
            row = _summary(name, run, args, None)
            row.update(epochs=args.epochs, fit_seconds=run["fit_seconds"],
                       seconds_per_epoch=run["fit_seconds"] / args.epochs,
                       val_accuracy=validation_accuracy(run["model"], args))  # fmt: skip
            result["accuracy"].append(row)
            print(json.dumps(row), flush=True)
    result["comparison"] = _comparison(result)
    print(json.dumps(result["comparison"], indent=2))
    write_result(args.output or ROOT / "benchmarks" / "results" / f"trainer_kd_seed{args.seed}.json", result)


def _fit(name: str, args: argparse.Namespace, student: nn.Module, teacher: nn.Module, hf_data: Any, tokenizer: Any,
         steps: int | None, out: Path) -> dict[str, Any]:  # fmt: skip
    copy_ = copy.deepcopy(student)  # every contender starts from the same weights
    if name.startswith("trainer"):
        return _trainer_fit(name, args, copy_.model, teacher.model, hf_data, tokenizer, steps, out)
    return _project_fit(name, args, copy_, teacher, steps, out)


def _comparison(result: dict[str, Any]) -> dict[str, Any]:
    timing = {row["contender"]: row for row in result["timing"]}
    comparison: dict[str, Any] = {}
    if {"trainer_plain", "project_plain"} <= timing.keys():
        comparison["plain_step_project_over_trainer"] = (
            timing["project_plain"]["seconds_per_step"] / timing["trainer_plain"]["seconds_per_step"]
        )
    if {"trainer_kd", "project_kd"} <= timing.keys():
        comparison["kd_epoch_speedup_estimate"] = (
            timing["trainer_kd"]["seconds_per_epoch_estimate"] / timing["project_kd"]["seconds_per_epoch_estimate"]
        )
    fits = {row["contender"]: row for row in result["accuracy"]}
    if {"trainer_kd", "project_kd"} <= fits.keys():
        trainer, project = fits["trainer_kd"], fits["project_kd"]
        comparison["kd_epoch_speedup_measured"] = trainer["seconds_per_epoch"] / project["seconds_per_epoch"]
        comparison["val_accuracy_points_project_minus_trainer"] = 100 * (
            project["val_accuracy"] - trainer["val_accuracy"]
        )
    return comparison


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    settings = {k: v for k, v in vars(args).items() if k != "labels"}
    settings.update(
        torch=torch.__version__, transformers=transformers.__version__, lightning=pl.__version__,
        machine=platform.machine(), cpu_count=os.cpu_count(), intra_op_threads=torch.get_num_threads(),
    )  # fmt: skip
    return settings


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", required=True, help="fine-tuned teacher classifier (save_pretrained folder)")
    parser.add_argument("--tokenizer", default=str(SHARED / "models" / "minilm-l6-h384-uncased"))
    parser.add_argument("--data", default=str(SHARED / "data" / "clinc_oos" / "plus"))
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=48)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument("--warmup-fraction", type=float, default=0.06, help="linear warm-up, then linear decay to 0")
    parser.add_argument("--alpha", type=float, default=0.5, help="weight of the labels' cross-entropy")
    parser.add_argument("--temperature", type=float, default=2.0)
    parser.add_argument(
        "--max-grad-norm", type=float, default=1.0, help="gradient clipping of both (the Trainer's default)"
    )
    parser.add_argument("--dropout", type=float, help="the student's dropout (default: its config's)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per contender (0: no timing runs)")
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--amortise", type=int, default=4, help="epochs the cache build is spread over")
    parser.add_argument("--epochs", type=int, default=4, help="whole epochs of the accuracy fits (0: none)")
    parser.add_argument("--only", nargs="+", default=list(CONTENDERS), choices=CONTENDERS)
    parser.add_argument(
        "--fits",
        nargs="+",
        default=["trainer_kd", "project_kd"],
        choices=["trainer_kd", "project_kd", "project_kd_ungrouped"],
        help="whole-epoch KD fits scored on validation (project_kd_ungrouped: the cache without length grouping)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", help="result file (default: benchmarks/results/trainer_kd_seed<seed>.json)")
    return parser.parse_args()


if __name__ == "__main__":
    main()
