"""MNIST: teacher, TinyMNIST from scratch and distilled, 70% magnitude pruning, int8 and ONNX variants, report.

Run from the project root, offline on the shared copy of MNIST:
    python recipes/mnist.py --data-root ../shared/data/mnist10k [--force] [--only STEP ...]
Online, leave --data-root out and torchvision downloads MNIST into data/.
Writes runs/mnist_recipe/<step>/ for each step and runs/mnist_recipe/report.{json,md,png}: a folder of its own, so
the recipe and `lightning-distill fit --config configs/mnist/<step>.yaml` (which writes runs/mnist/<step>/) never
overwrite each other's checkpoints. The export step writes the distilled student as an export folder,
runs/mnist_recipe/export/student/, that `load_exported` and `lightning-distill benchmark --artifact` read. Fits use
PyTorch's default thread count (one per physical core), recorded in each fit's config.yaml.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from lightning_distill.core.benchmark import (
    benchmark_module,
    benchmark_onnx,
    benchmark_quantized,
    write_report,
    write_rows,
)
from lightning_distill.core.export import OrtQuantConfig, export_tensor_classifier
from lightning_distill.core.models import TinyMNIST
from lightning_distill.core.quantization import DynamicQuantConfig, StaticQuantConfig, quantize, save_quantized
from lightning_distill.lightning.cli import cli_main, output_arguments
from lightning_distill.lightning.data.mnist import MNISTDataModule
from lightning_distill.recipes.engine import Recipe, load_trained, main_guard, recipe_arguments

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "mnist"  # configs/ of the project root


def build(recipe: Recipe, data_args: list[str]) -> Recipe:
    quiet = ["--trainer.enable_progress_bar=false"]

    def overrides(step: str) -> list[str]:
        """Arguments that move ``configs/mnist/<step>.yaml``'s outputs, and the teacher it reads, into the recipe."""
        folder = recipe.step_dir(step)
        config = yaml.safe_load((CONFIGS / f"{step}.yaml").read_text())
        args = output_arguments(config, folder, recipe.folder, folder / "checkpoints")
        if (config["model"].get("init_args") or {}).get("teacher_checkpoint"):
            args.append(f"--model.init_args.teacher_checkpoint={recipe.result('teacher')['checkpoint']}")
        return [*args, *data_args]

    def fit(config: str) -> dict:
        cli = cli_main(["fit", "--config", str(CONFIGS / f"{config}.yaml"), *quiet, *overrides(config)])
        checkpoint = cli.trainer.checkpoint_callback
        return {"checkpoint": checkpoint.best_model_path, "best_val_acc": float(checkpoint.best_model_score)}

    # Each step declares the configs and data it reads, and the fits the teacher checkpoint their config names: a
    # changed input redoes the step and every later one (recipe.result calls are recorded without being declared).
    inputs = {"data_args": data_args}
    for step in ("teacher", "student", "distill", "prune"):
        reads = ["teacher"] if step in ("distill", "prune") else []
        recipe.step(step, reads=reads, configs=[CONFIGS / f"{step}.yaml"], options=inputs)(lambda step=step: fit(step))

    def distilled() -> tuple:
        return load_trained(CONFIGS / "distill.yaml", recipe.result("distill")["checkpoint"], overrides("distill"))

    @recipe.step("quantize", configs=[CONFIGS / "distill.yaml"], options=inputs)
    def quantize_student() -> dict:
        model, data = distilled()
        data.setup("fit")
        folder = recipe.step_dir("quantize")
        static = quantize(model, StaticQuantConfig(backend="x86", calibration_batches=16), data.val_dataloader())
        dynamic = quantize(model, DynamicQuantConfig())
        return {
            "static": str(save_quantized(static, folder / "student_static_int8.pt")),
            "dynamic": str(save_quantized(dynamic, folder / "student_dynamic_int8.pt")),
        }

    _add_export(recipe, distilled, inputs)

    bench = recipe.step_dir("benchmark") / "rows.json"

    @recipe.step(
        "benchmark", configs=[CONFIGS / f"{c}.yaml" for c in ("teacher", "student", "distill", "prune")], options=inputs
    )
    def benchmark_all() -> dict:
        bench.unlink(missing_ok=True)
        for name, config, step in (
            ("teacher fp32", "teacher", "teacher"),
            ("TinyMNIST scratch fp32", "student", "student"),
            ("TinyMNIST distilled fp32", "distill", "distill"),
            ("TinyMNIST distilled + 70% pruned fp32", "prune", "prune"),
        ):
            model, data = load_trained(CONFIGS / f"{config}.yaml", recipe.result(step)["checkpoint"], overrides(step))
            data.setup("test")
            write_rows([benchmark_module(model, data, name=name)], bench)
        data = MNISTDataModule(**_data_kwargs(data_args))
        data.setup("test")
        quantized, exported = recipe.result("quantize"), recipe.result("export")
        rows = [
            benchmark_quantized(quantized["static"], TinyMNIST(), data, name="TinyMNIST distilled static int8"),
            benchmark_quantized(quantized["dynamic"], TinyMNIST(), data, name="TinyMNIST distilled dynamic int8"),
            benchmark_onnx(exported["onnx"], data, name="TinyMNIST distilled ONNX fp32"),
            benchmark_onnx(exported["onnx_int8"], data, name="TinyMNIST distilled ONNX int8"),
        ]
        write_rows(rows, bench)
        return {"rows": str(bench)}

    _add_report(recipe, bench)
    return recipe


def _add_export(recipe: Recipe, distilled: Callable[[], tuple], inputs: dict) -> None:
    """The export step: the distilled student (``distilled()``: model and data module) as an export folder."""

    @recipe.step("export", configs=[CONFIGS / "distill.yaml"], options=inputs)
    def export_student() -> dict:
        """The distilled student as an export folder (``load_exported`` and ``benchmark --artifact`` read it)."""
        model, data = distilled()
        data.setup("test")
        folder = recipe.step_dir("export") / "student"
        graphs = export_tensor_classifier(
            model,
            folder,
            data.example_input(8),
            id2label=data.id2label,
            preprocessing=data.preprocessing,
            quantization=OrtQuantConfig(mode="dynamic"),  # TinyMNIST is Linear layers only: no calibration needed
            title="TinyMNIST distilled from the MNIST teacher",
            provenance={"recipe": "mnist", "checkpoint": recipe.result("distill")["checkpoint"]},
        )
        return {"onnx": str(graphs["fp32"]), "onnx_int8": str(graphs["int8"]), "folder": str(folder)}


def _add_report(recipe: Recipe, bench: Path) -> None:
    """The report step: the benchmark's rows as report.{json,md,png} in the recipe's folder."""

    @recipe.step("report", reads=["benchmark"])
    def report() -> dict:
        rows = json.loads(bench.read_text())
        folder = write_report(
            rows, recipe.folder, title="MNIST (mnist10k): teacher vs. compressed students", reference="teacher fp32"
        )
        print((folder / "report.md").read_text())
        return {"report": str(folder / "report.md")}


def _data_kwargs(data_args: list[str]) -> dict:
    return {"root": data_args[1], "download": False} if data_args else {}


def main(argv: list[str] | None = None) -> None:
    """Run the recipe with the command-line arguments ``argv`` (default: ``sys.argv[1:]``)."""
    parser = recipe_arguments(__doc__.splitlines()[0])
    parser.add_argument("--data-root", help="folder holding MNIST/raw (default: download into data/)")
    args = parser.parse_args(argv)
    data_args = []
    if args.data_root is not None:
        MNISTDataModule(root=args.data_root, download=False)  # fails now, naming the missing files, not mid-recipe
        data_args = ["--data.root", args.data_root, "--data.download", "false"]
    build(Recipe("mnist_recipe"), data_args).run(force=args.force, only=args.only)


if __name__ == "__main__":
    main_guard(main)
