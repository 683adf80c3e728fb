"""MNIST with CNNs: resnet18 teacher -> SmallCNN distilled (logits + a feature map) -> channel-pruned -> int8 -> report.

Run from the project root, offline on the shared copy of MNIST:
    python recipes/mnist_cnn.py --data-root ../shared/data/mnist10k [--force] [--only STEP ...]
Online, leave --data-root out and torchvision downloads MNIST into data/.
Steps (each in runs/mnist_cnn_recipe/<step>/, redone when its config or an earlier step changes):
  teacher   torchvision resnet18 adapted to 1x28x28 (configs/mnist_cnn/teacher.yaml)
  student   SmallCNN from scratch, the baseline (configs/mnist_cnn/student.yaml)
  distill   SmallCNN distilled from the teacher: KD loss + feature loss between named layers (distill.yaml)
  prune     distilled while half of its convolution channels are removed on a schedule (prune.yaml)
  quantize  the pruned student as PyTorch static int8 (FX graph mode, Conv-BN-ReLU fused), and as an export folder
            (quantize/student/: fp32 and ONNX Runtime static int8 graphs) that `load_exported` and
            `lightning-distill benchmark --artifact` read
  benchmark every model on the test split, 1 thread, batch 1 latency
  report    runs/mnist_cnn_recipe/report.{json,md,png} with what each step bought
The fits' configs are read as dicts, changed (output folders, data root, teacher checkpoint) and handed to the
LightningCLI as objects, not command lines.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import write_json
from lightning_distill.core.benchmark import (
    benchmark_module,
    benchmark_onnx,
    benchmark_quantized,
    write_report,
    write_rows,
)
from lightning_distill.core.export import export_tensor_classifier
from lightning_distill.core.quantization import StaticQuantConfig, quantize, save_quantized
from lightning_distill.lightning.data.mnist import MNISTDataModule
from lightning_distill.recipes.engine import Recipe, main_guard, recipe_arguments
from lightning_distill.recipes.text.fit import build_fit, checkpoint_callback, init_args, load_config, run_fit

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "mnist_cnn"  # configs/ of the project root
NAMES = {
    "teacher": "resnet18 teacher fp32",
    "student": "SmallCNN scratch fp32",
    "distill": "SmallCNN distilled fp32",
    "prune": "SmallCNN distilled + 50% channels pruned fp32",
    "static": "pruned SmallCNN static int8 (FX)",
    "onnx": "pruned SmallCNN ONNX fp32",
    "onnx_int8": "pruned SmallCNN ONNX int8",
}


def fit_config(recipe: Recipe, step: str, data: dict[str, Any], limits: dict[str, Any]) -> dict[str, Any]:
    """``configs/mnist_cnn/<step>.yaml`` writing into the recipe's step folder, on the recipe's data and teacher."""
    config = load_config(CONFIGS / f"{step}.yaml")
    folder = recipe.step_dir(step)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(folder)
    trainer["logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": str(folder)}}
    others = [c for c in trainer.get("callbacks", []) if not c["class_path"].endswith("ModelCheckpoint")]
    trainer["callbacks"] = [checkpoint_callback(folder), *others]
    trainer["enable_progress_bar"] = False
    trainer.update(limits)
    init_args(config, "data").update(data)
    if "teacher_checkpoint" in init_args(config, "model"):
        init_args(config, "model")["teacher_checkpoint"] = recipe.result("teacher")["checkpoint"]
    return config


def build(recipe: Recipe, data: dict[str, Any], limits: dict[str, Any]) -> Recipe:
    """The recipe's steps; ``data`` are the data module's arguments, ``limits`` the trainer's (e.g. for a smoke run)."""
    options = {"data": data, "limits": limits}

    def fit(step: str) -> dict[str, Any]:
        config = fit_config(recipe, step, data, limits)
        if step != "prune":
            return run_fit(config, step)[2]
        config["trainer"]["callbacks"][0]["init_args"]["save_last"] = True
        cli, _, result = run_fit(config, step, keep="last")
        return {**result, **fully_pruned(result["checkpoint"], cli.trainer.checkpoint_callback.last_model_path)}

    for step in ("teacher", "student", "distill", "prune"):
        recipe.step(step, configs=[CONFIGS / f"{step}.yaml"], options=options)(lambda step=step: fit(step))

    def trained(step: str) -> tuple[Any, Any]:
        """The step's deployable model with its kept weights (pruned shapes included) and its data module."""
        from lightning_distill.lightning.modules.deployable import load_deployable

        cli = build_fit(fit_config(recipe, step, data, limits))
        return load_deployable(cli.model, recipe.result(step)["checkpoint"]), cli.datamodule

    @recipe.step("quantize", configs=[CONFIGS / "prune.yaml"], options=options)
    def quantize_student() -> dict[str, Any]:
        model, datamodule = trained("prune")
        datamodule.setup("fit")
        folder = recipe.step_dir("quantize")
        static = quantize(model, StaticQuantConfig(backend="x86", calibration_batches=16), datamodule.val_dataloader())
        report = getattr(static, "quantization_report", None)
        graphs = export_student(model, datamodule, folder / "student", recipe.result("prune")["checkpoint"])
        return {
            "static": str(save_quantized(static, folder / "student_static_int8.pt")),
            "static_report": report.to_dict() if report is not None else None,
            "onnx": str(graphs["fp32"]),
            "onnx_int8": str(graphs["int8"]),
            "export": str(folder / "student"),
        }

    bench = recipe.step_dir("benchmark") / "rows.json"

    @recipe.step("benchmark", configs=[CONFIGS / f"{s}.yaml" for s in ("teacher", "student", "distill", "prune")])
    def benchmark_all() -> dict[str, Any]:
        bench.unlink(missing_ok=True)
        for step in ("teacher", "student", "distill", "prune"):
            model, datamodule = trained(step)
            datamodule.setup("test")
            write_rows([benchmark_module(model, datamodule, name=NAMES[step])], bench)
        quantized = recipe.result("quantize")
        rows = [
            benchmark_quantized(quantized["static"], model, datamodule, name=NAMES["static"]),
            benchmark_onnx(quantized["onnx"], datamodule, name=NAMES["onnx"]),
            benchmark_onnx(quantized["onnx_int8"], datamodule, name=NAMES["onnx_int8"]),
        ]
        write_rows(rows, bench)
        return {"rows": str(bench)}

    @recipe.step("report", reads=["benchmark"])
    def report() -> dict[str, Any]:
        rows = json.loads(bench.read_text())
        gains = step_gains({row["name"]: row for row in rows})
        folder = write_report(
            rows,
            recipe.folder,
            title="MNIST (mnist10k) with CNNs: teacher vs. compressed students",
            reference=NAMES["teacher"],
            notes="\n" + gains_markdown(gains),
        )
        write_json(folder / "gains.json", gains)
        print((folder / "report.md").read_text())
        return {"report": str(folder / "report.md"), "gains": gains}

    return recipe


def export_student(model: Any, datamodule: MNISTDataModule, folder: Path, checkpoint: str) -> dict[str, Path]:
    """The pruned student as an export folder; its int8 graph is ONNX Runtime static int8, calibrated on 512
    validation images."""
    return export_tensor_classifier(
        model,
        folder,
        datamodule.benchmark_data("val")[0][:512],
        id2label=datamodule.id2label,
        preprocessing=datamodule.preprocessing,
        title="SmallCNN distilled from resnet18, half its channels pruned",
        provenance={"recipe": "mnist_cnn", "checkpoint": checkpoint},
    )


def fully_pruned(best: str, last: str) -> dict[str, Any]:
    """The prune step keeps the best ``val/acc`` checkpoint only if it holds the final, fully pruned shapes (the best
    epoch may come before the schedule ends); otherwise the last one, and says so."""
    from lightning_distill.core.safe_load import load_file

    def shapes(path: str) -> dict[str, tuple]:
        return {k: tuple(v.shape) for k, v in load_file(path)["state_dict"].items()}

    if shapes(best) == shapes(last):
        return {"checkpoint": best}
    print(f"the best val/acc checkpoint {best} is not fully pruned; the prune step keeps the last one, {last}")
    return {"checkpoint": last, "best_checkpoint_not_fully_pruned": best}


def step_gains(rows: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """What each step of the recipe bought, measured: accuracy changes in points, speed-up and size ratios.

    "The fp32 student" is the distilled SmallCNN before pruning; the int8 size is also given against the pruned fp32
    student, for what quantization alone buys. No bound is built in: read them against your own budget.
    """
    teacher, scratch, distilled = rows[NAMES["teacher"]], rows[NAMES["student"]], rows[NAMES["distill"]]
    pruned, final, onnx_int8 = rows[NAMES["prune"]], rows[NAMES["static"]], rows[NAMES["onnx_int8"]]
    return [
        _gain("distilled - scratch accuracy (points)", 100 * (distilled["accuracy"] - scratch["accuracy"])),
        _gain(
            "pruned student speed-up over the unpruned distilled one, batch-1 p50 (x)",
            distilled["latency_ms_p50"] / pruned["latency_ms_p50"],
        ),
        _gain("static int8 size / fp32 distilled student size", final["size_mb"] / distilled["size_mb"]),
        _gain("static int8 size / fp32 pruned student size", final["size_mb"] / pruned["size_mb"]),
        _gain("static int8 - teacher accuracy (points)", 100 * (final["accuracy"] - teacher["accuracy"])),
        _gain("ONNX int8 - teacher accuracy (points)", 100 * (onnx_int8["accuracy"] - teacher["accuracy"])),
    ]


def _gain(name: str, value: float) -> dict[str, Any]:
    return {"measure": name, "value": round(float(value), 4)}


def gains_markdown(gains: list[dict[str, Any]]) -> str:
    lines = ["## What each step bought", "", "| measure | value |", "|---|---|"]
    lines += [f"| {g['measure']} | {g['value']} |" for g in gains]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Run the recipe with the command-line arguments ``argv`` (default: ``sys.argv[1:]``)."""
    parser = recipe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="folder holding MNIST/raw (default: download into data/)")
    parser.add_argument("--runs", default="runs", help="folder of recipe runs (default: runs)")
    parser.add_argument("--limit-train-batches", type=float, default=None, help="for a smoke run: batches per epoch")
    parser.add_argument("--max-epochs", type=int, default=None, help="for a smoke run: epochs of every fit")
    args = parser.parse_args(argv)
    data: dict[str, Any] = {}
    if args.data_root is not None:
        MNISTDataModule(root=args.data_root, download=False)  # fails now, naming the missing files, not mid-recipe
        data = {"root": args.data_root, "download": False}
    limits: dict[str, Any] = {}
    if args.limit_train_batches is not None:
        limit = args.limit_train_batches
        limits.update(
            limit_train_batches=int(limit) if limit >= 1 else limit,
            limit_val_batches=int(limit) if limit >= 1 else limit,
        )
    if args.max_epochs is not None:
        limits["max_epochs"] = args.max_epochs
    build(Recipe("mnist_cnn_recipe", root=Path(args.runs)), copy.deepcopy(data), limits).run(
        force=args.force, only=args.only
    )


if __name__ == "__main__":
    main_guard(main)
