"""Pruning on CPU: unstructured (magnitude masks) vs structured (removed neurons and heads) at 30/50/70% sparsity.

For the MNIST MLP (the ``MNISTClassifier`` preset, trained here for a few epochs on ``../shared/data/mnist10k``) and
the offline CLINC150 student (3 layers of MiniLM-L6, from ``--clinc-student`` or ``runs/clinc_offline/
student_distilled`` when the CLINC recipe has run, else fine-tuned briefly here and saved to
``runs/pruning/clinc_student`` for the next run), every variant is pruned in one
shot at the start of a recovery fine-tuning run by the ``MagnitudePruning`` / ``StructuredPruning`` callbacks, then
measured with ``lightning_distill.core.benchmark``: parameters (and non-zero parameters), size on disk of
``save_pruned``'s ``model.pt``, test accuracy and batch-1 latency (tokenization included for text; one thread;
the variants of a model are timed in turns, so load from other processes on the machine hits them alike). The
dense model gets the same recovery fine-tuning as a control row, so accuracy differences come from pruning alone.

Sparsity means: unstructured, the fraction of the chosen Linear weights set to zero (MNIST: all three Linears;
CLINC: the encoder's Linears); structured, the fraction of units removed from every group (MLP hidden neurons;
attention heads and FFN neurons of each encoder layer).

For torchvision's ``resnet18`` (``weights=None``: no download, no data; 3x224x224 inputs, batch 1, one thread), the
dense network and the network with 50% and 70% of the channels of every channel group removed (``prune_structured``,
L1, one shot; residual stages included) are timed in turns, without training: accuracy is not measured, only
parameters, size and latency (the target: 50% >= 1.8x faster than dense, 70% >= 2.5x).

Writes ``benchmarks/results/pruning.json`` and prints a markdown table.

Run (one benchmark at a time on the machine):
    flock /tmp/bench.lock python benchmarks/pruning.py
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from _results import write_result
from _train import quiet_trainer
from torch import nn

from lightning_distill.core.atomic import replace_folder
from lightning_distill.core.benchmark import benchmark_module, file_size_mb, module_predictor
from lightning_distill.core.benchmark.measure import latency_ms, summarize_latency, torch_threads
from lightning_distill.core.models import MNISTClassifier, StudentFromTeacher, TransformerClassifier
from lightning_distill.core.pruning import prune_structured, save_pruned
from lightning_distill.lightning.callbacks import MagnitudePruning, StructuredPruning
from lightning_distill.lightning.data import MNISTDataModule, TextClassificationDataModule
from lightning_distill.lightning.modules import ClassifierModule
from lightning_distill.recipes.text import FirstExamples

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results" / "pruning.json"
DISTILLED_STUDENT = ROOT / "runs" / "clinc_offline" / "student_distilled"


def fine_tune(model: nn.Module, data: Any, lr: float, epochs: int, steps: int, pruning: pl.Callback | None) -> float:
    """Train ``model`` (with ``pruning`` applied at the first epoch); returns the wall seconds."""
    model.train()
    module = ClassifierModule(model, learning_rate=lr)
    started = time.perf_counter()
    callbacks = [pruning] if pruning is not None else []
    quiet_trainer(epochs, max_steps=steps, limit_val_batches=0, callbacks=callbacks).fit(module, data)
    model.eval()
    return time.perf_counter() - started


def measure(model: nn.Module, data: Any, name: str, args: argparse.Namespace) -> dict[str, Any]:
    model.eval()
    if args.test_limit > 0:
        data = FirstExamples(data, args.test_limit)
    with tempfile.TemporaryDirectory() as folder:
        save_pruned(model, folder)
        size = file_size_mb(Path(folder) / "model.pt")
        row = benchmark_module(
            model,
            data,
            name=name,
            artifact_path=Path(folder) / "model.pt",
            num_threads=args.latency_threads,
            iterations=args.iterations,
        ).to_dict()
    row["size_mb"] = round(size, 4)
    row["nonzero_params"] = int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))
    return row


def interleaved_latency(models: dict[str, nn.Module], data: Any, args: argparse.Namespace) -> dict[str, dict]:
    """Batch-1 latency of every model, measured in turns (``--rounds`` rounds of ``iterations / rounds`` calls each).

    The machine is shared: load that changes during the run then slows every model alike instead of whichever model
    happened to be measured at the time, so the speed-ups between variants stay fair.
    """
    example = data.benchmark_data("test")[0][:1]
    predictors = {name: module_predictor(model.eval(), data.encode) for name, model in models.items()}
    return latency_in_turns(predictors, example, args.latency_threads, args.iterations, args.rounds, warmup=5)


def latency_in_turns(
    predictors: dict[str, Any], example: Any, threads: int, iterations: int, rounds: int, warmup: int
) -> dict[str, dict]:
    """Latency statistics of each predictor on ``example``, ``iterations / rounds`` calls per predictor per round."""
    timings: dict[str, list[float]] = {name: [] for name in predictors}
    per_round = max(1, iterations // rounds)
    with torch_threads(threads), torch.inference_mode():
        for _ in range(rounds):
            for name, predict in predictors.items():
                timings[name] += latency_ms(predict, example, warmup=warmup, iterations=per_round)
    return {name: {k: round(v, 4) for k, v in summarize_latency(t).items()} for name, t in timings.items()}


def variants(
    task: str,
    base: nn.Module,
    data: Any,
    args: argparse.Namespace,
    lr: float,
    epochs: int,
    steps: int,
    magnitude_include: list[str],
) -> list[dict[str, Any]]:
    rows = [{**measure(base, data, f"{task}/dense", args), "method": "dense", "sparsity": 0.0, "train_s": 0.0}]
    models = {rows[-1]["name"]: base}
    print(rows[-1], flush=True)
    control = copy.deepcopy(base)
    models[f"{task}/dense+ft"] = control
    seconds = fine_tune(control, data, lr, epochs, steps, None)
    rows.append({**measure(control, data, f"{task}/dense+ft", args), "method": "dense+ft", "sparsity": 0.0})
    rows[-1]["train_s"] = seconds
    print(rows[-1], flush=True)
    for sparsity in args.sparsities:
        for method in ("unstructured", "structured"):
            model = copy.deepcopy(base)
            if method == "unstructured":
                callback: pl.Callback = MagnitudePruning(sparsity, include=magnitude_include, verbose=False)
            else:
                callback = StructuredPruning(sparsity, verbose=False)
            seconds = fine_tune(model, data, lr, epochs, steps, callback)
            row = measure(model, data, f"{task}/{method}-{round(100 * sparsity)}", args)
            models[row["name"]] = model
            rows.append({**row, "method": method, "sparsity": sparsity, "train_s": seconds})
            print(rows[-1], flush=True)
    latencies = interleaved_latency(models, data, args)
    for row in rows:
        row["latency_sequential"] = {k: row[k] for k in latencies[row["name"]]}
        row.update(latencies[row["name"]])
    dense = rows[0]
    for row in rows:
        row["task"] = task
        row["speedup_p50"] = round(dense["latency_ms_p50"] / row["latency_ms_p50"], 3)
        row["accuracy_change_points"] = round(100 * (row["accuracy"] - dense["accuracy"]), 2)
        row["accuracy_change_vs_dense_ft_points"] = round(100 * (row["accuracy"] - rows[1]["accuracy"]), 2)
    return rows


def mnist_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = MNISTDataModule(root=args.mnist_root, download=False, batch_size=128)
    pl.seed_everything(args.seed)
    model = MNISTClassifier()
    seconds = fine_tune(model, data, 1e-3, args.mnist_epochs, -1, None)
    print(f"mnist: trained the MNISTClassifier for {args.mnist_epochs} epochs in {seconds:.1f} s", flush=True)
    rows = variants("mnist_mlp", model, data, args, 1e-3, args.mnist_recovery_epochs, -1, ["*"])
    return rows, {"model": "MNISTClassifier (784-512-256-10)", "trained_here_epochs": args.mnist_epochs}


def clinc_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    data = TextClassificationDataModule(
        tokenizer=args.minilm,
        data_files={split: f"{args.clinc_data}/{split}.parquet" for split in ("train", "validation", "test")},
        label_column="intent",
        max_length=32,
        batch_size=64,
        eval_batch_size=256,
    )
    data.setup()
    student_path = args.clinc_student or (str(DISTILLED_STUDENT) if DISTILLED_STUDENT.is_dir() else None)
    pl.seed_everything(args.seed)
    if student_path is not None:
        student: nn.Module = TransformerClassifier(student_path, num_classes=data.num_classes, id2label=data.id2label)
        source = {"student": student_path, "trained_here_steps": 0}
    else:
        student = StudentFromTeacher(
            args.minilm, layers=[0, 2, 4], num_classes=data.num_classes, id2label=data.id2label
        )
        seconds = fine_tune(student, data, args.clinc_train_lr, 100, args.clinc_train_steps, None)
        with replace_folder(ROOT / "runs" / "pruning" / "clinc_student") as fresh:
            student.save_pretrained(fresh, tokenizer=data.tokenizer)
        source = {"student": "layers 0,2,4 of MiniLM-L6, fine-tuned here", "trained_here_steps": args.clinc_train_steps}
        source["trained_here_seconds"] = seconds
    print(f"clinc: student {source}", flush=True)
    rows = variants(
        "clinc_student", student, data, args, args.clinc_lr, 100, args.clinc_recovery_steps, ["*.encoder.layer.*"]
    )
    return rows, source


def resnet18_rows(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Dense vs channel-pruned resnet18 (random weights): parameters, size and interleaved batch-1 latency."""
    import torchvision

    pl.seed_everything(args.seed)
    example = torch.randn(1, 3, 224, 224)
    models = {"resnet18/dense": torchvision.models.resnet18(weights=None).eval()}
    for sparsity in args.resnet_sparsities:
        model = copy.deepcopy(models["resnet18/dense"])
        prune_structured(model, sparsity, unit_types=["channels"], example_inputs=example)
        models[f"resnet18/structured-{round(100 * sparsity)}"] = model.eval()
    latency = latency_in_turns(models, example, args.latency_threads, args.resnet_iterations, args.rounds, warmup=3)
    per_round = max(1, args.resnet_iterations // args.rounds)
    rows = []
    for name, model in models.items():
        with tempfile.TemporaryDirectory() as folder:
            save_pruned(model, folder)
            size = file_size_mb(Path(folder) / "model.pt")
        sparsity = 0.0 if name.endswith("dense") else int(name.rsplit("-", 1)[1]) / 100
        stats = latency[name]
        params = sum(p.numel() for p in model.parameters())
        row = {"name": name, "task": "resnet18", "method": "dense" if sparsity == 0 else "structured"}
        rows.append({**row, "sparsity": sparsity, "params": params, "nonzero_params": params, "size_mb": size, **stats})
    dense = rows[0]["latency_ms_p50"]
    for row in rows:
        row["speedup_p50"] = round(dense / row["latency_ms_p50"], 3)
        row["accuracy"] = row["accuracy_change_points"] = row["accuracy_change_vs_dense_ft_points"] = None
        print(row, flush=True)
    return rows, {
        "model": "torchvision resnet18, weights=None, 3x224x224, batch 1",
        "iterations": per_round * args.rounds,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| model | method | sparsity | params | non-zero | size (MB) | p50 ms | speed-up | accuracy | vs dense | "
        "vs dense+ft |\n|---|---|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for r in rows:
        lines.append(
            f"| {r['task']} | {r['method']} | {round(100 * r['sparsity'])}% | {r['params']:,} | "
            f"{r['nonzero_params']:,} | {r['size_mb']:.3f} | {r['latency_ms_p50']:.3f} | {r['speedup_p50']:.2f}x | "
            + (
                f"{100 * r['accuracy']:.2f} | {r['accuracy_change_points']:+.2f} | "
                f"{r['accuracy_change_vs_dense_ft_points']:+.2f} |"
                if r.get("accuracy") is not None
                else "n/a | n/a | n/a |"
            )
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(SHARED / "data" / "mnist10k"))
    parser.add_argument("--minilm", default=str(SHARED / "models" / "minilm-l6-h384-uncased"))
    parser.add_argument("--clinc-data", default=str(SHARED / "data" / "clinc_oos" / "plus"))
    parser.add_argument("--clinc-student", default=None, help="a trained student saved with save_pretrained")
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.3, 0.5, 0.7])
    parser.add_argument("--mnist-epochs", type=int, default=5, help="training of the dense MNIST MLP")
    parser.add_argument("--mnist-recovery-epochs", type=int, default=2)
    parser.add_argument("--clinc-train-steps", type=int, default=200, help="only when no trained student is given")
    parser.add_argument("--clinc-recovery-steps", type=int, default=40, help="batches of 64 after pruning")
    parser.add_argument("--clinc-train-lr", type=float, default=4e-4, help="only when no trained student is given")
    parser.add_argument("--clinc-lr", type=float, default=1e-4, help="recovery fine-tuning")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for training")
    parser.add_argument("--latency-threads", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=300, help="timed batch-1 calls per model")
    parser.add_argument("--rounds", type=int, default=6, help="turns in which the models' latencies are measured")
    parser.add_argument("--resnet-sparsities", type=float, nargs="+", default=[0.5, 0.7])
    parser.add_argument("--resnet-iterations", type=int, default=60, help="timed resnet18 calls per model")
    parser.add_argument("--skip", choices=["mnist", "clinc", "resnet18"], nargs="*", default=[])
    parser.add_argument("--test-limit", type=int, default=2000, help="accuracy on the first N test examples; 0: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    output = Path(args.output)
    # Each task's rows are replaced by this run's and the other task's are kept, so the two parts can run apart.
    results: dict[str, Any] = json.loads(output.read_text()) if output.exists() else {}
    results.pop("status", None)  # a note on partial results from an earlier run
    results.setdefault("runs", {})
    results.setdefault("rows", [])
    tasks = (("mnist_mlp", "mnist", mnist_rows), ("clinc_student", "clinc", clinc_rows))
    for task, skip, measure_task in (*tasks, ("resnet18", "resnet18", resnet18_rows)):
        if skip in args.skip:
            continue
        started = time.time()
        run: dict[str, Any] = {
            "command": " ".join(["flock /tmp/bench.lock python benchmarks/pruning.py", *sys.argv[1:]]),
            "settings": vars(args),
            "machine": {
                "cpu_count": os.cpu_count(),
                "platform": platform.platform(),
                "torch": torch.__version__,
                "load_average_at_start": os.getloadavg(),
            },
        }
        rows, run["model"] = measure_task(args)
        run["machine"]["load_average_at_end"] = os.getloadavg()
        run["minutes"] = round((time.time() - started) / 60, 2)
        results["runs"][task] = run
        results["rows"] = [r for r in results["rows"] if r["task"] != task] + rows
        half = next((r for r in rows if r["method"] == "structured" and r["sparsity"] == 0.5), None)
        if task == "clinc_student" and half is not None:
            # The stricter of the two comparisons: with the dense student as given, and after the same fine-tuning.
            loss = max(-half["accuracy_change_points"], -half["accuracy_change_vs_dense_ft_points"])
            results["target"] = {
                "structured_50_speedup_p50": half["speedup_p50"],
                "speedup_at_least_1_5x": half["speedup_p50"] >= 1.5,
                "accuracy_loss_points": loss,
                "accuracy_loss_at_most_1_5_points": loss <= 1.5,
            }
        if task == "resnet18":
            speedups = {r["sparsity"]: r["speedup_p50"] for r in rows}
            results["resnet18_target"] = {
                "speedup_50": speedups.get(0.5),
                "speedup_50_at_least_1_8x": (speedups.get(0.5) or 0) >= 1.8,
                "speedup_70": speedups.get(0.7),
                "speedup_70_at_least_2_5x": (speedups.get(0.7) or 0) >= 2.5,
            }
        write_result(output, results)
    print(table(results["rows"]))
    print(json.dumps(results.get("target", {}), indent=2))


if __name__ == "__main__":
    main()
