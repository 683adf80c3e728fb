"""Batch-1 latency and accuracy of every int8 engine on an MNIST MLP and a small CNN, one thread, same CPU.

Rows per model: fp32 PyTorch; eager static int8 (the MLP runs end to end in eager mode, the CNN through FX graph
mode: the row's ``notes`` say which); eager dynamic int8 (MLP only: the CNN's convolutions have no dynamic kernel);
torchao dynamic int8 (``quantize_``); torchao static int8 (PT2E, X86InductorQuantizer); the same after
``torch.compile`` (inductor, freezing on, which lowers the PT2E pattern to fused int8 kernels); ONNX Runtime fp32 and
static int8 (``quantize_onnx``). Both models are trained here, seeded, on the 8,000 training images of the offline
MNIST copy; accuracy is on its test split.

Latency is measured with ``lightning_distill.core.benchmark``'s functions (``interleaved_latency``, ``accuracy``),
in interleaved turns against the fp32 PyTorch model: each turn times the fp32 model and the row's
model alternately (order swapped every turn), so load on the machine hits both alike; each row reports the fp32
figures of its own turns and the ratio. PyTorch runs with ``torch.set_num_threads(1)``, ONNX Runtime with
``intra_op_num_threads=1, inter_op_num_threads=1``; both are recorded in the JSON with the machine and versions.

Run (alone on the machine):
    flock /tmp/bench.lock python benchmarks/quantization_engines.py
    python benchmarks/quantization_engines.py --quick   # checks that it runs: 1 short epoch, a few timed calls
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable
from importlib.metadata import version
from itertools import islice
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from _results import write_result
from _train import quiet_trainer
from torch import nn

from lightning_distill.core.atomic import write_torch
from lightning_distill.core.benchmark import file_size_mb, machine_info, machine_summary
from lightning_distill.core.benchmark.measure import (
    accuracy,
    interleaved_latency,
    module_predictor,
    torch_threads,
)
from lightning_distill.core.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    OrtSessionConfig,
    create_session,
    export_onnx,
    onnx_predictor,
    quantize_onnx,
)
from lightning_distill.core.models import MNISTClassifier, SmallCNN
from lightning_distill.core.quantization import DynamicQuantConfig, StaticQuantConfig, quantize, save_quantized

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
RESULTS = ROOT / "benchmarks" / "results" / "quantization_engines.json"
Predict = Callable[[Any], Any]


def train(model: nn.Module, data: Any, args: argparse.Namespace) -> nn.Module:
    """Seeded brief training (``--epochs``; ``--quick``: a few batches of one epoch) on ``--train-threads``."""
    from lightning_distill.lightning.modules import ClassifierModule

    pl.seed_everything(args.seed)
    with torch_threads(args.train_threads):
        limit = {"limit_train_batches": 5} if args.quick else {}
        trainer = quiet_trainer(args.epochs, limit_val_batches=0, **limit)
        trainer.fit(ClassifierModule(model, 10, learning_rate=1e-3), data)
    return model.eval()


def compiled(model: nn.Module) -> Predict:
    """``torch.compile`` with inductor freezing on: constant-folding the weights turns PT2E's int8 dequantize +
    linear / conv pattern into one int8 kernel. ``dynamic=False``: with dynamic shapes (the accuracy pass's batch of
    64, then batch 1) the PT2E int8 CNN failed inside inductor on a layout assertion (torch 2.14); one static graph per
    batch size avoids it."""
    import torch._inductor.config as inductor_config

    inductor_config.freezing = True
    return module_predictor(torch.compile(model, dynamic=False))


class Engines:
    """Builds each form of one model and measures it against the model's fp32 form."""

    def __init__(self, name: str, model: nn.Module, data: Any, args: argparse.Namespace) -> None:
        self.name, self.model, self.args = name, model, args
        self.folder = Path(args.workdir) / name
        self.folder.mkdir(parents=True, exist_ok=True)
        inputs, labels = data.benchmark_data("test")
        self.inputs, self.labels = (inputs[:256], labels[:256]) if args.quick else (inputs, labels)
        self.calibration = [batch[0] for batch in islice(data.val_dataloader(), args.calibration_batches)]
        self.fp32 = module_predictor(model)
        self.rows: list[dict[str, Any]] = []

    def measure(self, variant: str, predict: Predict, path: Path, notes: list[str] | None = None) -> None:
        """Accuracy, then latency in interleaved turns with the fp32 model; a row that fails records why."""
        started = time.perf_counter()
        row: dict[str, Any] = {"name": f"{self.name}/{variant}"}
        try:
            with torch_threads(self.args.threads), torch.inference_mode():
                row["accuracy"] = accuracy(predict, self.inputs, self.labels)
                row.update(self.interleaved(predict))
        except Exception as error:  # inductor and exporter failures differ by model and CPU: record, keep measuring
            row["error"] = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        row["size_mb"] = round(file_size_mb(path), 4)
        row["notes"] = "; ".join(notes or [])
        row["seconds"] = round(time.perf_counter() - started, 1)
        self.rows.append(row)
        print({k: v for k, v in row.items() if k != "notes"}, flush=True)

    def interleaved(self, predict: Predict) -> dict[str, float]:
        queries = [self.inputs[:1]] * self.args.iterations
        args = self.args
        timed = interleaved_latency({"fp32": self.fp32, "row": predict}, queries, args.turns, args.warmup, args.threads)
        mine, base = timed["row"], timed["fp32"]
        return {
            "latency_ms_p50": round(mine["latency_ms_p50"], 4),
            "latency_ms_p95": round(mine["latency_ms_p95"], 4),
            "fp32_latency_ms_p50": round(base["latency_ms_p50"], 4),
            "fp32_latency_ms_p95": round(base["latency_ms_p95"], 4),
            "p50_vs_fp32": round(mine["latency_ms_p50"] / base["latency_ms_p50"], 3),
        }

    def quantized(self, variant: str, config: Any, calibrate: bool) -> nn.Module:
        model = quantize(self.model, config, calibration_data=self.calibration if calibrate else None)
        path = save_quantized(model, self.folder / f"{variant}.pt")
        self.measure(variant, module_predictor(model), path, model.quantization_report.notes)
        return model

    def run(self, eager_dynamic: bool) -> list[dict[str, Any]]:
        fp32_path = self.folder / "fp32.pt"
        write_torch(fp32_path, self.model.state_dict())
        self.measure("pytorch-fp32", module_predictor(copy.deepcopy(self.model)), fp32_path)
        batches = len(self.calibration)
        self.quantized("eager-static-int8", StaticQuantConfig(backend="x86", calibration_batches=batches), True)
        if eager_dynamic:
            self.quantized("eager-dynamic-int8", DynamicQuantConfig(backend="x86"), False)
        self.quantized("torchao-dynamic-int8", DynamicQuantConfig(engine="torchao"), False)
        config = StaticQuantConfig(engine="torchao", calibration_batches=batches)
        static = self.quantized("torchao-static-int8", config, True)
        note = ["torch.compile, inductor freezing on"]
        self.measure("torchao-static-int8+compile", compiled(static), self.folder / "torchao-static-int8.pt", note)

        onnx_path = export_onnx(self.model, OnnxExportConfig(), self.calibration[0][:2], self.folder / "model.onnx")
        session = OrtSessionConfig(intra_op_num_threads=self.args.threads, inter_op_num_threads=1)
        self.measure("onnx-fp32", onnx_predictor(create_session(onnx_path, session)), onnx_path)
        int8_path = self.folder / "model.int8-static.onnx"
        quantize_onnx(onnx_path, int8_path, OrtQuantConfig(mode="static"), self.calibration)
        self.measure("onnx-int8-static", onnx_predictor(create_session(int8_path, session)), int8_path)
        return self.rows


COLUMNS = ("name", "accuracy", "size_mb", "latency_ms_p50", "latency_ms_p95", "fp32_latency_ms_p50", "p50_vs_fp32")


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of the rows (a failed row shows its error in place of the figures)."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['name']} | failed: {row['error']} |")
            continue
        cells = [f"{row[c]:.4g}" if isinstance(row.get(c), float) else str(row.get(c, "-")) for c in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-root", default=str(SHARED / "data" / "mnist10k"))
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each model")
    parser.add_argument("--threads", type=int, default=1, help="PyTorch and ONNX Runtime intra-op threads measured")
    parser.add_argument("--train-threads", type=int, default=2)
    parser.add_argument("--turns", type=int, default=10, help="interleaved turns of each row against fp32")
    parser.add_argument("--iterations", type=int, default=50, help="timed batch-1 calls per model and turn")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--calibration-batches", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="check that it runs: tiny epoch, few calls")
    parser.add_argument("--workdir", default=str(ROOT / "runs" / "benchmarks" / "quantization_engines"))
    parser.add_argument("--output", help=f"JSON report (default {RESULTS}; with --quick, quick.json in --workdir)")
    args = parser.parse_args(argv)
    if args.quick:
        args.epochs, args.turns, args.iterations, args.warmup, args.calibration_batches = 1, 2, 5, 3, 2
    if args.output is None:  # a quick run never replaces the kept figures
        args.output = str(Path(args.workdir) / "quick.json") if args.quick else str(RESULTS)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    from lightning_distill.lightning.data import MNISTDataModule

    started = time.time()
    data = MNISTDataModule(root=args.mnist_root, download=False, batch_size=64)
    data.setup()
    rows: list[dict[str, Any]] = []
    mlp = train(MNISTClassifier(), data, args)
    cnn = train(SmallCNN(num_classes=10), data, args)  # the MNIST-CNN recipe's student, widths 32, 64, 128
    torch.set_num_threads(args.threads)
    for name, model, eager_dynamic in (("mlp", mlp, True), ("cnn", cnn, False)):
        rows += Engines(name, model, data, args).run(eager_dynamic)
    machine = machine_info() | {"bench_threads": args.threads, "ort_intra_op_threads": args.threads}
    machine |= {"torchao": version("torchao"), "seconds": round(time.time() - started)}
    report = {
        "command": "flock /tmp/bench.lock python " + " ".join(sys.argv),
        "settings": dict(vars(args)),
        "machine": machine,
        "rows": rows,
    }
    write_result(args.output, report)
    print(machine_summary(machine))
    print(table(rows))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
