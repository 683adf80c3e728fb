"""Every deployable form of the MNIST and offline CLINC teachers and students, measured the same way.

Rows per model: PyTorch fp32, PyTorch int8 (dynamic; static for the MLPs) on the eager engine (torch.ao) and on
torchao (``-torchao``: ``quantize_`` dynamic, PT2E static), ONNX Runtime fp32, ONNX Runtime int8 (dynamic; static for
the MLPs), bitsandbytes int8 and nf4. For the tasks in ``--compile`` (MNIST by default: compiling a transformer
several times takes long on a 2-core machine) the PyTorch rows are measured again after ``torch.compile``
(``+compile``; inductor freezing on, which lowers the PT2E int8 pattern to int8 kernels). Columns: test accuracy, size
on disk of the saved artifact, batch-1 latency p50/p95 (tokenization included for text: the predict function takes raw
strings), and throughput at batch 64, all on ``--threads`` threads (PyTorch intra-op threads, ONNX Runtime intra-op
threads).

Models: the MNIST teacher (MNISTClassifier) and student (TinyMNIST, distilled from the teacher), from Lightning
checkpoints when given, else trained briefly here; the CLINC150 teacher (MiniLM-L6) and 3-layer student from folders
written with ``save_pretrained`` (by default those of ``benchmarks/clinc_offline.py``).

Targets checked and written to the JSON: static int8 MNIST MLPs (eager and torchao) at most 30% of the fp32 size with
at most 0.5 points accuracy loss; torchao dynamic int8 CLINC student within 1 point of fp32; ONNX Runtime int8 CLINC
student at least 3x faster at batch 1 than the same student in fp32 PyTorch,
with at most 1 point accuracy loss.

Run (one benchmark at a time on the machine):
    flock /tmp/bench.lock python benchmarks/quantization.py
    flock /tmp/bench.lock python benchmarks/quantization.py --skip clinc   # MNIST only; rows of the other part are kept
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from _results import write_result
from _train import quiet_trainer
from torch import nn

from lightning_distill.core.atomic import replace_folder, write_torch
from lightning_distill.core.benchmark import BenchmarkResult, benchmark, count_parameters, file_size_mb, markdown_table
from lightning_distill.core.benchmark.measure import module_predictor
from lightning_distill.core.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    OrtSessionConfig,
    create_session,
    export_onnx,
    onnx_predictor,
    quantize_onnx,
)
from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    StaticQuantConfig,
    quantize,
    save_quantized,
)
from lightning_distill.lightning.modules import load_teacher_weights

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results" / "quantization.json"


def _inputs_only(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: v for k, v in batch.items() if k not in ("labels", "index")}
    return batch[0]


class Runner:
    """Builds each artifact of one model, saves it under ``folder`` and benchmarks it."""

    def __init__(
        self, task: str, name: str, model: nn.Module, data: Any, calibration: list[Any], args: argparse.Namespace
    ) -> None:
        self.prefix = f"{task}/{name}"
        self.model = model.eval()
        self.data = data
        self.calibration = calibration
        self.args = args
        self.folder = Path(args.workdir) / task / name
        self.folder.mkdir(parents=True, exist_ok=True)
        inputs, labels = data.benchmark_data("test")
        limit = args.clinc_test_limit if task == "clinc" else None
        self.inputs = inputs[:limit] if limit else inputs
        self.labels = labels[:limit] if limit else labels
        self.rows: list[dict[str, Any]] = []
        # Every row of one model reports the float model's parameter count: quantized layers keep the same weights
        # in packed buffers, which nn.Module.parameters() no longer lists.
        self.params = count_parameters(model)

    def measure(self, variant: str, predict: Callable[[Any], Any], path: Path, params: int | None) -> dict[str, Any]:
        started = time.perf_counter()
        result: BenchmarkResult = benchmark(
            predict,
            self.inputs,
            self.labels,
            name=f"{self.prefix}/{variant}",
            size_mb=file_size_mb(path),
            params=params,
            num_threads=self.args.threads,
            iterations=self.args.iterations,
            throughput_batch_size=64,
        )
        row = result.to_dict() | {"artifact": str(path), "seconds": round(time.perf_counter() - started, 1)}
        self.rows.append(row)
        print(
            f"{row['name']}: acc {row['accuracy']:.4f} size {row['size_mb']:.3f} MB p50 {row['latency_ms_p50']:.3f} ms "
            f"p95 {row['latency_ms_p95']:.3f} ms thr {row['throughput_per_s']:.0f}/s ({row['seconds']} s)",
            flush=True,
        )
        return row

    def pytorch(self, variant: str, model: nn.Module, path: Path) -> None:
        self.measure(variant, module_predictor(model, self.data.encode), path, self.params)
        if self.prefix.split("/")[0] in self.args.compile:
            self.compiled(variant, model, path)

    def compiled(self, variant: str, model: nn.Module, path: Path) -> None:
        """The same model after ``torch.compile``; a model that does not compile gets a row saying why."""
        import torch._inductor.config as inductor_config

        # Freezing constant-folds weights so the PT2E int8 dequantize + linear pattern becomes one int8 kernel; it
        # breaks torchao's tensor-subclass weights (quantize_): "Argument 'weight_tensor' ... used before defined".
        inductor_config.freezing = variant.endswith("static-torchao")
        predict = module_predictor(torch.compile(model), self.data.encode)

        def no_grad_predict(raw: Any) -> Any:
            with torch.no_grad():
                return predict(raw)

        try:
            self.measure(f"{variant}+compile", no_grad_predict, path, self.params)
        except Exception as error:  # inductor failures differ by model and backend: record them, keep measuring
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            print(f"{self.prefix}/{variant}+compile: not measured, torch.compile failed: {reason}", flush=True)
            self.rows.append({"name": f"{self.prefix}/{variant}+compile", "error": reason})

    def run(self, static: bool) -> list[dict[str, Any]]:
        fp32_path = self.folder / "fp32.pt"
        write_torch(fp32_path, self.model.state_dict())
        self.pytorch("pytorch-fp32", self.model, fp32_path)

        for engine, suffix in (("eager", ""), ("torchao", "-torchao")):
            dynamic = quantize(self.model, DynamicQuantConfig(engine=engine))
            path = save_quantized(dynamic, self.folder / f"int8_dynamic{suffix}.pt")
            self.pytorch(f"pytorch-int8-dynamic{suffix}", dynamic, path)
            if static:
                config = StaticQuantConfig(backend="x86", calibration_batches=len(self.calibration), engine=engine)
                quantized = quantize(self.model, config, calibration_data=self.calibration)
                path = save_quantized(quantized, self.folder / f"int8_static{suffix}.pt")
                self.pytorch(f"pytorch-int8-static{suffix}", quantized, path)

        example = _inputs_only(self.calibration[0])
        example = {k: v[:2] for k, v in example.items()} if isinstance(example, dict) else example[:2]
        onnx_path = export_onnx(self.model, OnnxExportConfig(), example, self.folder / "model.onnx")
        session_config = OrtSessionConfig(intra_op_num_threads=self.args.threads, inter_op_num_threads=1)
        self.measure(
            "onnx-fp32",
            onnx_predictor(create_session(onnx_path, session_config), self.data.encode),
            onnx_path,
            self.params,
        )
        modes = ["dynamic", "static"] if static else ["dynamic"]
        for mode in modes:
            data = self.calibration if mode == "static" else None
            path = quantize_onnx(onnx_path, self.folder / f"model.int8-{mode}.onnx", OrtQuantConfig(mode=mode), data)
            predict = onnx_predictor(create_session(path, session_config), self.data.encode)
            self.measure(f"onnx-int8-{mode}", predict, path, self.params)

        for weights in self.args.clinc_bnb if self.prefix.startswith("clinc") else self.args.bnb:
            quantized = quantize(self.model, BitsAndBytesConfig(weights=weights))
            self.pytorch(f"bnb-{weights}", quantized, save_quantized(quantized, self.folder / f"bnb_{weights}.pt"))
        return self.rows


# --- MNIST ----------------------------------------------------------------------------------------------------------


def mnist_models(args: argparse.Namespace) -> tuple[Any, nn.Module, nn.Module]:
    from lightning_distill.core.losses import KDLoss
    from lightning_distill.core.models import MNISTClassifier, TinyMNIST
    from lightning_distill.lightning.data import MNISTDataModule
    from lightning_distill.lightning.modules import ClassifierModule, DistillationModule

    data = MNISTDataModule(root=args.mnist_root, download=False, batch_size=128)
    data.setup()
    pl.seed_everything(args.seed)
    teacher, student = MNISTClassifier(), TinyMNIST()

    torch.set_num_threads(args.train_threads)

    if args.mnist_teacher:
        load_teacher_weights(teacher, args.mnist_teacher)
    else:
        quiet_trainer(args.mnist_epochs).fit(ClassifierModule(teacher, 10, learning_rate=1e-3), data)
    if args.mnist_student:
        load_teacher_weights(student, args.mnist_student)
    else:
        module = DistillationModule(
            student, teacher, loss=KDLoss(temperature=4.0, soft_target_weight=0.7), num_classes=10, learning_rate=1e-3
        )
        quiet_trainer(args.mnist_epochs).fit(module, data)
    torch.set_num_threads(args.threads)
    return data, teacher.eval(), student.eval()


# --- CLINC ----------------------------------------------------------------------------------------------------------


def clinc_models(args: argparse.Namespace) -> tuple[Any, nn.Module, nn.Module]:
    from lightning_distill.core.models import TransformerClassifier
    from lightning_distill.lightning.data import TextClassificationDataModule

    missing = [p for p in (args.clinc_teacher, args.clinc_student) if not (Path(p) / "config.json").is_file()]
    if missing and args.clinc_train_epochs == 0:
        raise FileNotFoundError(
            f"no model saved with save_pretrained at {missing}: run benchmarks/clinc_offline.py first, pass "
            "--clinc-teacher/--clinc-student, --clinc-train-epochs N to fine-tune them briefly here, or --skip clinc"
        )
    tokenizer = args.clinc_student if not missing else args.clinc_base
    data = TextClassificationDataModule(
        tokenizer=tokenizer,
        data_files={split: f"{args.clinc_data}/{split}.parquet" for split in ("train", "validation", "test")},
        label_column="intent",
        max_length=args.max_length,
        batch_size=64,
        eval_batch_size=64,
        group_by_length=True,
    )
    data.setup()
    labels = {"num_classes": data.num_classes, "id2label": data.id2label}
    if missing:
        train_clinc_models(args, data, labels)
    return (
        data,
        TransformerClassifier(args.clinc_teacher, **labels),
        TransformerClassifier(args.clinc_student, **labels),
    )


def train_clinc_models(args: argparse.Namespace, data: Any, labels: dict[str, Any]) -> None:
    """Fallback when benchmarks/clinc_offline.py has not run: fine-tune MiniLM-L6 and its layers 0, 2, 4 briefly."""
    from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
    from lightning_distill.lightning.modules import ClassifierModule

    folder = Path(args.workdir) / "clinc_models"
    args.clinc_teacher, args.clinc_student = str(folder / "teacher"), str(folder / "student")
    for path, model, lr in (
        (args.clinc_teacher, lambda: TransformerClassifier(args.clinc_base, **labels), 1.5e-4),
        (args.clinc_student, lambda: StudentFromTeacher(args.clinc_base, layers=[0, 2, 4], **labels), 2e-4),
    ):
        if (Path(path) / "config.json").is_file():
            continue
        pl.seed_everything(args.seed)
        torch.set_num_threads(args.train_threads)
        classifier = model()
        module = ClassifierModule(classifier, data.num_classes, learning_rate=lr, warmup_fraction=0.06)
        quiet_trainer(args.clinc_train_epochs, limit_val_batches=0).fit(module, data)
        with replace_folder(path) as fresh:  # a folder with config.json is taken as finished: write it whole
            classifier.save_pretrained(fresh, tokenizer=data.tokenizer)
        torch.set_num_threads(args.threads)
        print(f"fine-tuned {path} for {args.clinc_train_epochs} epoch(s)", flush=True)


# --- report ---------------------------------------------------------------------------------------------------------


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    return next((r for r in rows if r["name"] == name), None)


def targets(rows: list[dict[str, Any]]) -> dict[str, Any]:
    checks: dict[str, Any] = {}
    for model in ("teacher", "student"):
        for suffix, key in (("", "static_int8"), ("-torchao", "torchao_static_int8")):
            fp32 = _row(rows, f"mnist/{model}/pytorch-fp32")
            static = _row(rows, f"mnist/{model}/pytorch-int8-static{suffix}")
            if fp32 and static:
                size_ratio = static["size_mb"] / fp32["size_mb"]
                loss = 100 * (fp32["accuracy"] - static["accuracy"])
                checks[f"mnist_{model}_{key}"] = {
                    "size_ratio": round(size_ratio, 4),
                    "accuracy_loss_points": round(loss, 2),
                    "met": size_ratio <= 0.30 and loss <= 0.5,
                }
    fp32, dynamic = _row(rows, "clinc/student/pytorch-fp32"), _row(rows, "clinc/student/pytorch-int8-dynamic-torchao")
    if fp32 and dynamic:
        loss = 100 * (fp32["accuracy"] - dynamic["accuracy"])
        checks["clinc_student_torchao_dynamic_int8"] = {"accuracy_loss_points": round(loss, 2), "met": loss <= 1.0}
    fp32, int8 = _row(rows, "clinc/student/pytorch-fp32"), _row(rows, "clinc/student/onnx-int8-dynamic")
    if fp32 and int8:
        speedup = fp32["latency_ms_p50"] / int8["latency_ms_p50"]
        loss = 100 * (fp32["accuracy"] - int8["accuracy"])
        checks["clinc_student_onnx_int8_vs_pytorch_fp32"] = {
            "batch1_p50_speedup": round(speedup, 2),
            "accuracy_loss_points": round(loss, 2),
            "met": speedup >= 3.0 and loss <= 1.0,
        }
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip", nargs="*", default=[], choices=["mnist", "clinc"])
    parser.add_argument("--mnist-root", default=str(SHARED / "data" / "mnist10k"))
    parser.add_argument("--mnist-teacher", help="checkpoint of the MNIST teacher (else trained here)")
    parser.add_argument("--mnist-student", help="checkpoint of the MNIST student (else distilled here)")
    parser.add_argument("--mnist-epochs", type=int, default=5, help="epochs of the brief training when no checkpoint")
    parser.add_argument("--clinc-teacher", default=str(ROOT / "runs" / "clinc_offline" / "teacher"))
    parser.add_argument("--clinc-student", default=str(ROOT / "runs" / "clinc_offline" / "student_distilled"))
    parser.add_argument("--clinc-data", default=str(SHARED / "data" / "clinc_oos" / "plus"))
    parser.add_argument("--clinc-base", default=str(SHARED / "models" / "minilm-l6-h384-uncased"))
    parser.add_argument(
        "--clinc-train-epochs",
        type=int,
        default=0,
        help="fine-tune teacher and student here when their folders are missing",
    )
    parser.add_argument("--clinc-test-limit", type=int, default=None, help="first N test queries only (default all)")
    parser.add_argument("--max-length", type=int, default=32)
    parser.add_argument("--bnb", nargs="*", default=["int8", "nf4"], choices=["int8", "nf4", "fp4"])
    parser.add_argument("--clinc-bnb", nargs="*", default=["int8"], choices=["int8", "nf4", "fp4"])
    parser.add_argument(
        "--compile", nargs="*", default=["mnist"], choices=["mnist", "clinc"], help="tasks with +compile rows"
    )
    parser.add_argument("--threads", type=int, default=1, help="threads of every measurement")
    parser.add_argument("--train-threads", type=int, default=2, help="threads of the brief training runs")
    parser.add_argument("--iterations", type=int, default=200)
    parser.add_argument("--calibration-batches", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "benchmarks" / "quantization"))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()

    rows: list[dict[str, Any]] = []
    if "mnist" not in args.skip:
        data, teacher, student = mnist_models(args)
        calibration = list(islice(data.val_dataloader(), args.calibration_batches))
        for name, model in (("teacher", teacher), ("student", student)):
            rows += Runner("mnist", name, model, data, calibration, args).run(static=True)
            write_report(rows, args, started)  # a later failure keeps what was measured
    if "clinc" not in args.skip:
        data, teacher, student = clinc_models(args)
        calibration = list(islice(data.val_dataloader(), args.calibration_batches))
        for name, model in (("teacher", teacher), ("student", student)):
            rows += Runner("clinc", name, model, data, calibration, args).run(static=False)
            write_report(rows, args, started)
    report = write_report(rows, args, started)
    print(markdown_table(report["rows"]))
    print(json.dumps(report["targets"], indent=2))


def write_report(rows: list[dict[str, Any]], args: argparse.Namespace, started: float) -> dict[str, Any]:
    """Write the JSON report; rows of an earlier run that this one did not measure (``--skip``) are kept."""
    output = Path(args.output)
    previous = json.loads(output.read_text()) if output.exists() else {}
    new_names = {r["name"] for r in rows}
    all_rows = [r for r in previous.get("rows", []) if r["name"] not in new_names] + rows
    report = {
        "command": "flock /tmp/bench.lock python " + " ".join(sys.argv),
        "settings": dict(vars(args)),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "torch": torch.__version__,
            "load_average_at_end": os.getloadavg(),
            "seconds": round(time.time() - started),
        },
        "targets": targets(all_rows),
        "rows": all_rows,
    }
    write_result(output, report)
    return report


if __name__ == "__main__":
    main()
