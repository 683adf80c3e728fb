"""Steps of a text-classification compression recipe, shared by ``recipes/clinc.py`` and ``recipes/clinc_offline.py``.

Every training step runs the LightningCLI in-process on the task's configs (``<configs>/teacher.yaml`` and
``<configs>/distill.yaml``), with command-line overrides for the paths, epochs and output folders:

1. ``teacher``: a fine-tuned teacher as a ``save_pretrained`` folder: a given folder as is; a Lightning checkpoint of
   ``teacher.yaml``, or a Hub name, saved to ``teacher/model``; or, with no teacher given, ``fit`` of ``teacher.yaml``.
2. ``distill``: ``fit`` of ``distill.yaml`` (teacher frozen, its logits cached) -> ``distill/student`` (best val/acc).
3. ``prune`` (optional): the distilled student loses a fraction of its attention heads and FFN neurons gradually
   during a ``fit`` of ``distill.yaml`` (``StructuredPruning``: first-order Taylor importance, 12 cubic steps over the
   first half of the epochs, distillation throughout) -> ``prune/student`` (``save_pruned`` format).
4. ``quantize``: PyTorch dynamic int8 of the final student (the pruned one where there is one).
5. ``export``: the final student as ONNX fp32, as optimized by ONNX Runtime, as ONNX Runtime dynamic int8 (the
   embedding tables included: ONNX Runtime quantizes their ``Gather``), and as int8 with 4-bit embedding tables; with
   pruning, the unpruned student as int8 with 4-bit embeddings too.
6. ``benchmark``: every artifact reloaded from disk, measured on raw test texts (tokenization in every latency).
7. ``report``: ``report.{json,md,png}`` with ratios against the fp32 teacher, the options and the issue's target,
   checked for each ONNX candidate; the final artifact is the most compressed candidate that meets it.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_distill.recipe import Recipe
from lightning_distill.safe_load import load_file

REFERENCE = "teacher fp32"
INT8 = "ONNX int8 (ORT dynamic)"
EMB4 = "ONNX int8 + 4-bit embeddings"
# The export step's result keys and the report's row labels of the final student's ONNX graphs.
ONNX_ARTIFACTS = (
    ("onnx", "ONNX fp32"),
    ("onnx_optimized", "ONNX fp32 (ORT optimized)"),
    ("onnx_int8", INT8),
    ("onnx_int8_emb4", EMB4),
)
# Issue 6's target for the final artifact against the fp32 PyTorch teacher.
TARGET = {"speedup_at_least": 8.0, "size_fraction_at_most": 1 / 6, "accuracy_drop_at_most": 0.015}


@dataclass(frozen=True)
class TextRecipeSettings:
    """What a text recipe trains and measures; recorded in the report, and by each step the settings it depends on.

    Args:
        configs: Folder with ``teacher.yaml`` and ``distill.yaml``.
        title: Title of the report.
        data: Data-module arguments overriding the configs' (``data_files``, ``dataset``, ...), the tokenizer excluded.
        tokenizer: The student's tokenizer (Hub name or folder).
        teacher_tokenizer: The teacher's tokenizer where the teacher's folder holds none; None: ``tokenizer``.
        teacher: A fine-tuned teacher: ``save_pretrained`` folder, Lightning checkpoint of ``teacher.yaml``, or Hub
            name; None fits ``teacher.yaml`` on ``teacher_base``.
        teacher_base: Checkpoint ``teacher.yaml`` fine-tunes (and builds to load a Lightning checkpoint).
        student_base: Checkpoint the student is built from; None: the fine-tuned teacher (its layers and trained head,
            rather than those of the pretrained encoder).
        student_layers: Layers of ``student_base`` the student keeps (``StudentFromTeacher``); None keeps the config's.
        prune: Run the structured pruning step.
        sparsity: Fraction of every layer's attention heads and FFN neurons that pruning removes.
        teacher_epochs: Epochs of the teacher fit; None keeps the config's.
        epochs: Epochs of distillation; None keeps the config's.
        prune_epochs: Epochs of the pruning fit (with the teacher's soft targets): units are removed in the first half,
            the second half fine-tunes the pruned student.
        limit_train_batches: Trainer's ``limit_train_batches`` of every fit (fraction or batch count); None: all.
        limit_val_batches: Trainer's ``limit_val_batches`` of every fit; None: all.
        test_limit: Benchmark accuracy on the first ``test_limit`` test texts only; None: all.
        bench_threads: Intra-op threads of every latency measurement.
        bench_iterations: Timed batch-1 calls per artifact.
        teacher_dropout: Dropout of the teacher fit (``ClassifierModule(dropout=...)``); None keeps the config's.
        dropout: Dropout of the student in the distill and prune fits (``DistillationModule(dropout=...)``); None
            keeps the config's.
    """

    configs: str
    title: str
    data: dict[str, Any]
    tokenizer: str
    teacher: str | None
    teacher_base: str | None
    student_base: str | None
    teacher_tokenizer: str | None = None
    student_layers: list[int] | None = None
    prune: bool = True
    sparsity: float = 0.5
    teacher_epochs: int | None = None
    epochs: int | None = None
    prune_epochs: int = 8
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    test_limit: int | None = None
    bench_threads: int = 1
    bench_iterations: int = 100
    teacher_dropout: float | None = None
    dropout: float | None = None
    command: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.teacher is None and self.teacher_base is None:
            raise ValueError("give a fine-tuned teacher, or a teacher_base for the teacher fit")
        for name in ("teacher_epochs", "epochs", "prune_epochs", "test_limit", "bench_threads", "bench_iterations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("limit_train_batches", "limit_val_batches"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (a fraction of the batches, or a count), got {value}")


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options both CLINC recipes share: pruning, epochs, CPU-time bounds and benchmark settings."""
    parser.add_argument("--runs", default="runs", help="folder of all recipe runs (default: runs)")
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="skip the structured pruning step")
    parser.add_argument("--prune", dest="prune", action="store_true", help="prune the student (default)")
    parser.add_argument("--sparsity", type=float, default=0.5, help="heads and FFN neurons pruned (default 0.5)")
    parser.add_argument("--teacher-epochs", type=int, help="epochs of the teacher fit (default: the config's)")
    parser.add_argument("--epochs", type=int, help="epochs of distillation (default: the config's)")
    parser.add_argument(
        "--prune-epochs", type=int, default=8, help="epochs of the pruning fit: prune in the first half (default 8)"
    )
    parser.add_argument(
        "--limit-train-batches", type=_fraction_or_count, help="per fit: a fraction (0.25) or a count (100) of batches"
    )
    parser.add_argument("--limit-val-batches", type=_fraction_or_count, help="per fit, as --limit-train-batches")
    parser.add_argument("--test-limit", type=int, help="benchmark accuracy on the first N test texts (default: all)")
    parser.add_argument("--bench-threads", type=int, default=1, help="threads of the latency measurement (default 1)")
    parser.add_argument("--bench-iterations", type=int, default=100, help="timed batch-1 calls per artifact")
    parser.add_argument("--teacher-dropout", type=float, help="dropout of the teacher fit (default: the config's)")
    parser.add_argument("--dropout", type=float, help="dropout of the student while distilled (default: the config's)")


def common_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`TextRecipeSettings` fields read from the options :func:`add_common_options` added."""
    names = (
        "prune",
        "sparsity",
        "teacher_epochs",
        "epochs",
        "prune_epochs",
        "limit_train_batches",
        "limit_val_batches",
        "test_limit",
        "bench_threads",
        "bench_iterations",
        "teacher_dropout",
        "dropout",
    )
    return {name: getattr(args, name) for name in names}


def _fraction_or_count(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and value > 1 else value


def missing_paths(paths: dict[str, str | Path | None]) -> list[str]:
    """``"<option> <path> does not exist"`` for each given path that does not exist."""
    return [f"{option} {path} does not exist" for option, path in paths.items() if path and not Path(path).exists()]


def is_local(name: str) -> bool:
    """Whether a model or tokenizer name is a local path (else it is a Hub name)."""
    return Path(name).exists() or name.startswith((".", "/", "~")) or name.endswith((".ckpt", ".pt"))


# --- running the configs ----------------------------------------------------------------------------------------------


def _cli_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _data_overrides(data: dict[str, Any]) -> list[str]:
    args = []
    for key, value in data.items():
        args += [f"--data.init_args.{key}", "null" if value is None else _cli_value(value)]
    return args


def _dropout_override(dropout: float | None) -> list[str]:
    return [] if dropout is None else ["--model.init_args.dropout", str(dropout)]


def _checkpoint_callback(folder: Path) -> dict[str, Any]:
    return {
        "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
        "init_args": {
            "monitor": "val/acc",
            "mode": "max",
            "dirpath": str(folder / "checkpoints"),
            "filename": "best",
            "enable_version_counter": False,
        },
    }


def _fit(
    settings: TextRecipeSettings,
    folder: Path,
    config: str,
    overrides: list[str],
    epochs: int | None,
    callbacks: Sequence[dict[str, Any]] = (),
    keep: str = "best",
) -> tuple[Any, dict[str, Any]]:
    """``lightning-distill fit`` of ``config`` into ``folder``.

    Args:
        keep: ``"best"``: load the weights of the best checkpoint (by ``val/acc``); ``"last"``: keep the weights the fit
            ended with (the prune step: an earlier, better-scoring epoch may not be fully pruned yet).

    Returns:
        The CLI, whose model holds the kept weights, and the best checkpoint's path and score (and the last
        ``val/acc`` with ``keep="last"``).
    """
    from lightning_distill.cli import cli_main

    args = [
        "fit",
        "--config",
        str(Path(settings.configs) / config),
        *overrides,
        "--trainer.default_root_dir",
        str(folder),
        "--trainer.logger",
        json.dumps(
            {
                "class_path": "lightning.pytorch.loggers.CSVLogger",
                "init_args": {"save_dir": str(folder), "name": "logs"},
            }
        ),
        "--trainer.callbacks",
        json.dumps([_checkpoint_callback(folder), *callbacks]),
    ]
    if epochs is not None:
        args += ["--trainer.max_epochs", str(epochs)]
    for name in ("limit_train_batches", "limit_val_batches"):
        if getattr(settings, name) is not None:
            args += [f"--trainer.{name}", str(getattr(settings, name))]
    cli = cli_main(args)
    checkpoint = cli.trainer.checkpoint_callback
    if not checkpoint.best_model_path:
        raise RuntimeError(f"the fit of {config} saved no checkpoint under {folder / 'checkpoints'} (no val/acc?)")
    result = {"checkpoint": checkpoint.best_model_path, "best_val_acc": float(checkpoint.best_model_score)}
    if keep == "last":
        return cli, {**result, "last_val_acc": float(cli.trainer.callback_metrics["val/acc"])}
    state = load_file(checkpoint.best_model_path)["state_dict"]
    cli.model.load_state_dict(state)
    return cli, result


def has_tokenizer(folder: str | Path) -> bool:
    return (Path(folder) / "tokenizer_config.json").is_file()


# --- loading artifacts --------------------------------------------------------------------------------------------


def load_classifier(folder: str | Path) -> nn.Module:
    """A Hugging Face sequence classifier saved with ``save_pretrained``."""
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()


def load_pruned_classifier(folder: str | Path) -> nn.Module:
    """A Hugging Face sequence classifier saved with ``save_pruned`` (its config is that of the unpruned model)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from lightning_distill.pruning import load_pruned

    model = AutoModelForSequenceClassification.from_config(AutoConfig.from_pretrained(str(folder)))
    return load_pruned(model, folder).eval()


def weights_file(folder: str | Path) -> Path:
    """The weights file of a saved model folder (``model.safetensors``, ``model.pt`` of ``save_pruned``, ...)."""
    for name in ("model.safetensors", "model.pt", "pytorch_model.bin"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    raise FileNotFoundError(f"no model weights (model.safetensors, model.pt, pytorch_model.bin) in {folder}")


def model_inputs(model: nn.Module, encoded: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of a tokenizer's output that ``model.forward`` takes (DistilBERT takes no ``token_type_ids``)."""
    accepted = inspect.signature(model.forward).parameters
    return {k: v for k, v in encoded.items() if k in accepted}


class FirstExamples:
    """A data module's benchmark interface (``benchmark_data``, ``encode``) cut to its first ``limit`` texts."""

    def __init__(self, data: Any, limit: int | None) -> None:
        self.data, self.limit = data, limit

    def benchmark_data(self, split: str = "test") -> tuple[Any, torch.Tensor]:
        inputs, labels = self.data.benchmark_data(split)
        return (inputs[: self.limit], labels[: self.limit]) if self.limit else (inputs, labels)

    def encode(self, raw: Any) -> Any:
        return self.data.encode(raw)


def embedding_is_int8(path: str | Path) -> bool:
    """Whether the word-embedding table of an ONNX graph is stored as 8-bit integers."""
    import onnx

    int8 = {onnx.TensorProto.INT8, onnx.TensorProto.UINT8}
    graph = onnx.load(str(path)).graph
    return any("word_embeddings" in t.name and t.data_type in int8 for t in graph.initializer)


# --- the recipe -------------------------------------------------------------------------------------------------------


# The settings each step's results depend on, recorded in its done.json: a change of one redoes that step and every
# later one. The report depends on every setting (it lists them).
_FIT = ("data", "tokenizer", "teacher_tokenizer", "limit_train_batches", "limit_val_batches")
STEP_OPTIONS = {
    "teacher": (*_FIT, "teacher", "teacher_base", "teacher_epochs", "teacher_dropout"),
    "distill": (*_FIT, "student_base", "student_layers", "epochs", "dropout"),
    "prune": (*_FIT, "sparsity", "prune_epochs", "dropout"),
    "quantize": ("prune",),
    "export": ("data", "prune"),
    "benchmark": ("data", "tokenizer", "teacher_tokenizer", "prune", "test_limit", "bench_threads", "bench_iterations"),
}


def step_options(settings: TextRecipeSettings, step: str) -> dict[str, Any]:
    """The settings ``step``'s results depend on (see :data:`STEP_OPTIONS`)."""
    if step == "report":
        return {k: v for k, v in asdict(settings).items() if k != "command"}
    names = STEP_OPTIONS[step]
    if step == "teacher" and settings.teacher is not None:  # no fit: its epochs, dropout and limits do not count
        is_folder = Path(settings.teacher).is_dir()
        names = ("teacher",) if is_folder else ("teacher", "teacher_base", "data", "tokenizer", "teacher_tokenizer")
    return {name: getattr(settings, name) for name in names}


def build(recipe: Recipe, settings: TextRecipeSettings) -> Recipe:
    """Add the steps of the module docstring to ``recipe``."""
    from lightning_distill.benchmark import (
        benchmark_module,
        benchmark_onnx,
        benchmark_quantized,
        write_report,
        write_rows,
    )
    from lightning_distill.data import TextClassificationDataModule

    final = "student pruned" if settings.prune else "student"
    bench = recipe.step_dir("benchmark") / "rows.json"
    distill_yaml = [Path(settings.configs) / "distill.yaml"]
    fits_teacher = settings.teacher is None or Path(settings.teacher).is_file()

    def teacher_folder() -> str:
        return recipe.result("teacher")["model"]

    def teacher_tokenizer() -> str:
        if has_tokenizer(teacher_folder()):
            return teacher_folder()
        return settings.teacher_tokenizer or settings.tokenizer

    @functools.cache
    def distill_config() -> dict[str, Any]:
        """``distill.yaml`` as data: the data module's and the student's arguments the steps start from."""
        import yaml

        return yaml.safe_load((Path(settings.configs) / "distill.yaml").read_text())

    def data_module(tokenizer: str) -> TextClassificationDataModule:
        config = distill_config()
        kwargs = {**config["data"]["init_args"], **settings.data, "tokenizer": tokenizer, "teacher_tokenizer": None}
        return TextClassificationDataModule(**kwargs)

    def distill_overrides() -> list[str]:
        return [
            "--model.init_args.teacher.init_args.checkpoint",
            teacher_folder(),
            "--model.init_args.teacher_checkpoint",
            "null",
            "--model.init_args.teacher_cache_dir",
            str(recipe.folder / "teacher_logits"),
            *_data_overrides(
                {**settings.data, "tokenizer": settings.tokenizer, "teacher_tokenizer": teacher_tokenizer()}
            ),
            *_dropout_override(settings.dropout),
        ]

    @recipe.step(
        "teacher",
        configs=[Path(settings.configs) / "teacher.yaml"] if fits_teacher else [],
        options=step_options(settings, "teacher"),
    )
    def teacher() -> dict:
        folder = recipe.step_dir("teacher") / "model"
        source = settings.teacher
        overrides = [
            "--model.init_args.model.init_args.checkpoint",
            str(settings.teacher_base),
            *_data_overrides({**settings.data, "tokenizer": settings.teacher_tokenizer or settings.tokenizer}),
            *_dropout_override(settings.teacher_dropout),
        ]
        if source is not None and Path(source).is_dir():
            return {"model": source, "source": "fine-tuned folder, used as is"}
        if source is None:
            cli, best = _fit(settings, recipe.step_dir("teacher"), "teacher.yaml", overrides, settings.teacher_epochs)
            model, tokenizer, result = cli.model.model, cli.datamodule.tokenizer, {"source": "fit", **best}
        elif Path(source).is_file():
            from lightning_distill.recipe import load_trained

            model, data = load_trained(Path(settings.configs) / "teacher.yaml", source, overrides)
            tokenizer, result = data.tokenizer, {"source": f"Lightning checkpoint {source}"}
        else:
            from transformers import AutoTokenizer

            from lightning_distill.models import TransformerClassifier

            model, tokenizer = TransformerClassifier(source), AutoTokenizer.from_pretrained(source)
            result = {"source": f"Hub model {source}, saved locally"}
        model.save_pretrained(folder, tokenizer=tokenizer)
        return {"model": str(folder), **result}

    @recipe.step("distill", configs=distill_yaml, options=step_options(settings, "distill"))
    def distill() -> dict:
        # The whole student as JSON: the config's may load a teacher fit's checkpoint (teacher_weights), which the
        # recipe's teacher folder replaces, and a dotted `...teacher_weights=null` would arrive as the string 'None'.
        student = distill_config()["model"]["init_args"]["student"]
        init_args = {**student.get("init_args", {}), "checkpoint": settings.student_base or teacher_folder()}
        if "teacher_weights" in init_args:
            init_args["teacher_weights"] = None  # explicit: the JSON is merged into the config's student
        if settings.student_layers is not None:
            init_args["layers"] = list(settings.student_layers)
        overrides = distill_overrides()
        overrides += ["--model.init_args.student", json.dumps({**student, "init_args": init_args})]
        folder = recipe.step_dir("distill")
        cli, best = _fit(settings, folder, "distill.yaml", overrides, settings.epochs)
        cli.model.student.save_pretrained(folder / "student", tokenizer=cli.datamodule.tokenizer)
        return {"student": str(folder / "student"), **best}

    if settings.prune:

        @recipe.step("prune", configs=distill_yaml, options=step_options(settings, "prune"))
        def prune() -> dict:
            from lightning_distill.pruning import pruned_shapes, save_pruned

            distilled = {
                "class_path": "lightning_distill.models.TransformerClassifier",
                "init_args": {"checkpoint": recipe.result("distill")["student"]},
            }
            overrides = [*distill_overrides(), "--model.init_args.student", json.dumps(distilled)]
            pruning = gradual_pruning(settings, train_batches(data_module(recipe.result("distill")["student"])))
            folder = recipe.step_dir("prune")
            cli, best = _fit(settings, folder, "distill.yaml", overrides, settings.prune_epochs, [pruning], keep="last")
            student = cli.model.student.model
            save_pruned(student, folder / "student")
            cli.datamodule.tokenizer.save_pretrained(str(folder / "student"))
            shapes = pruned_shapes(student)
            return {"student": str(folder / "student"), "parameters": shapes["parameters"], **best}

    def final_student() -> tuple[nn.Module, str]:
        if settings.prune:
            folder = recipe.result("prune")["student"]
            return load_pruned_classifier(folder), folder
        folder = recipe.result("distill")["student"]
        return load_classifier(folder), folder

    @recipe.step("quantize", options=step_options(settings, "quantize"))
    def quantize_student() -> dict:
        from lightning_distill.quantization import DynamicQuantConfig, quantize, save_quantized

        model, _ = final_student()
        path = recipe.step_dir("quantize") / "student_dynamic_int8.pt"
        return {"dynamic_int8": str(save_quantized(quantize(model, DynamicQuantConfig()), path))}

    @recipe.step("export", configs=distill_yaml, options=step_options(settings, "export"))
    def export_student() -> dict:
        from lightning_distill.export import OnnxExportConfig, OrtQuantConfig, export_onnx, optimize_onnx, quantize_onnx

        out = recipe.step_dir("export")

        def export(model: nn.Module, folder: str, name: str) -> Path:
            data = data_module(folder)
            return export_onnx(model, OnnxExportConfig(), model_inputs(model, data.example_input(8)), out / name)

        model, folder = final_student()
        onnx_path = export(model, folder, "student.onnx")
        optimized = optimize_onnx(onnx_path, out / "student_optimized.onnx")
        # ORT's optimized graph has fused contrib ops its quantizer cannot type: quantize the exported graph (the
        # session applies the same fusions when it loads the int8 model).
        int8 = quantize_onnx(onnx_path, out / "student_int8.onnx", OrtQuantConfig(mode="dynamic"))
        emb4 = quantize_onnx(onnx_path, out / "student_int8_emb4.onnx", OrtQuantConfig(embedding_bits=4))
        result = {
            "onnx": str(onnx_path),
            "onnx_optimized": str(optimized),
            "onnx_int8": str(int8),
            "onnx_int8_emb4": str(emb4),
            "embedding_int8": embedding_is_int8(int8),
        }
        if settings.prune:  # the unpruned student too, as the most accurate compressed candidate
            unpruned = recipe.result("distill")["student"]
            float_path = export(load_classifier(unpruned), unpruned, "unpruned_student.onnx")
            config = OrtQuantConfig(embedding_bits=4)
            result["unpruned_onnx_int8_emb4"] = str(
                quantize_onnx(float_path, out / "unpruned_student_int8_emb4.onnx", config)
            )
            float_path.unlink()
        return result

    @recipe.step("benchmark", configs=distill_yaml, options=step_options(settings, "benchmark"))
    def benchmark_all() -> dict:
        bench.unlink(missing_ok=True)
        options = {"num_threads": settings.bench_threads, "iterations": settings.bench_iterations}
        student_folder = recipe.result("distill")["student"]
        teacher_data = FirstExamples(data_module(teacher_tokenizer()), settings.test_limit)
        data = FirstExamples(data_module(student_folder), settings.test_limit)
        float_model, folder = final_student()
        quantized, exported = recipe.result("quantize"), recipe.result("export")
        # Each artifact is reloaded from disk when its turn comes, so only one model is in memory at a time.
        measures = [
            (
                REFERENCE,
                lambda name: _module_row(load_classifier(teacher_folder()), teacher_data, name, teacher_folder()),
            ),
            ("student fp32", lambda name: _module_row(load_classifier(student_folder), data, name, student_folder)),
        ]
        if settings.prune:
            measures.append((f"{final} fp32", lambda name: _module_row(float_model, data, name, folder)))
        measures.append(
            (
                f"{final} int8 (PyTorch dynamic)",
                lambda name: benchmark_quantized(quantized["dynamic_int8"], float_model, data, name=name, **options),
            )
        )
        onnx_rows = [(f"{final} {label}", key) for key, label in ONNX_ARTIFACTS]
        if settings.prune:
            onnx_rows.append((f"student {EMB4}", "unpruned_onnx_int8_emb4"))
        for row_name, key in onnx_rows:
            measures.append((row_name, lambda name, key=key: benchmark_onnx(exported[key], data, name=name, **options)))
        for index, (name, measure) in enumerate(measures, start=1):
            print(f"benchmark {index}/{len(measures)}: {name} ...", end=" ", flush=True)
            row = measure(name)
            write_rows([row], bench)
            print(f"accuracy {row.accuracy:.4f}, {row.size_mb:.2f} MB, p50 {row.latency_ms_p50:.2f} ms", flush=True)
        # Most compressed first: the report's final artifact is the first of these within the accuracy budget.
        candidates = [f"{final} {EMB4}", f"{final} {INT8}"]
        if settings.prune:
            candidates.append(f"student {EMB4}")
        return {"rows": str(bench), "candidates": candidates}

    def _module_row(model: nn.Module, data: Any, name: str, folder: str | Path) -> Any:
        return benchmark_module(
            model,
            data,
            name=name,
            artifact_path=weights_file(folder),
            num_threads=settings.bench_threads,
            iterations=settings.bench_iterations,
        )

    @recipe.step("report", options=step_options(settings, "report"))
    def report() -> dict:
        from lightning_distill.benchmark import with_ratios

        rows = json.loads(bench.read_text())
        folder = write_report(rows, recipe.folder, title=settings.title, reference=REFERENCE)
        ratios = {r["name"]: r for r in with_ratios(rows, REFERENCE)}
        checks = [_target_check(ratios[name]) for name in recipe.result("benchmark")["candidates"]]
        target = dict(next((c for c in checks if c["met"]), checks[0]))
        target["candidates"] = checks
        with (folder / "report.md").open("a") as markdown:
            markdown.write(_target_markdown(target) + _settings_markdown(recipe, settings))
        (folder / "report_settings.json").write_text(
            json.dumps({"settings": asdict(settings), "target": target, "steps": _step_results(recipe)}, indent=2)
            + "\n"
        )
        print((folder / "report.md").read_text())
        return {"report": str(folder / "report.md"), "target": target}

    return recipe


PRUNING_POINTS = 12


def train_batches(data: Any) -> int:
    """Optimizer steps per epoch of ``data``'s training set."""
    data.setup("fit")
    return len(data.train_dataloader())


def gradual_pruning(settings: TextRecipeSettings, batches_per_epoch: int) -> dict[str, Any]:
    """The prune step's ``StructuredPruning``: Taylor importance, :data:`PRUNING_POINTS` cubic steps in the first half
    of the optimizer steps (fewer when there are fewer than ``2 * PRUNING_POINTS`` steps).

    On CLINC150 (3-layer MiniLM student, half the heads and FFN neurons) this schedule with 8 epochs of distillation
    lost 0.9 to 1.3 points of test accuracy where one-shot L1 pruning with 5 epochs of recovery lost 1.9
    (``benchmarks/pruning_recovery.py``).
    """
    limit = settings.limit_train_batches
    if isinstance(limit, int) or (limit is not None and limit > 1):
        batches_per_epoch = min(batches_per_epoch, int(limit))
    elif limit is not None:
        batches_per_epoch = max(1, int(batches_per_epoch * limit))
    total = settings.prune_epochs * batches_per_epoch
    if total < 2:
        raise ValueError(
            f"the prune step has {total} optimizer step(s); gradual pruning needs at least 2 (Taylor scores are "
            "gathered before the first point): raise --prune-epochs or --limit-train-batches"
        )
    half = total // 2
    points = min(PRUNING_POINTS, half)  # fewer points on a very short run, so the schedule ends inside it
    frequency = half // points
    return {
        "class_path": "lightning_distill.callbacks.StructuredPruning",
        "init_args": {
            "final_sparsity": settings.sparsity,
            "start": frequency,
            "end": frequency * points,
            "unit": "step",
            "frequency": frequency,
            "schedule": "cubic",
            "importance": "taylor",
            "include": ["student.*"],
        },
    }


def _target_check(row: dict[str, Any]) -> dict[str, Any]:
    check = {
        "artifact": row["name"],
        "speedup": row["speedup_vs_reference"],
        "size_fraction": row["size_fraction_of_reference"],
        "accuracy_delta": row["accuracy_delta_vs_reference"],
        "speedup_met": row["speedup_vs_reference"] >= TARGET["speedup_at_least"],
        "size_met": row["size_fraction_of_reference"] <= TARGET["size_fraction_at_most"],
        "accuracy_met": row["accuracy_delta_vs_reference"] >= -TARGET["accuracy_drop_at_most"],
    }
    return {**check, "met": check["speedup_met"] and check["size_met"] and check["accuracy_met"]}


def _step_results(recipe: Recipe) -> dict[str, Any]:
    return {step: recipe.result(step) for step, _ in recipe.steps if recipe.is_done(step)}


def _target_markdown(target: dict[str, Any]) -> str:
    def mark(met: bool) -> str:
        return "met" if met else "**not met**"

    return (
        f"\nTarget of issue 6 for the final artifact, `{target['artifact']}`, against `{REFERENCE}`:\n\n"
        f"- speed-up at batch 1 (p50) >= {TARGET['speedup_at_least']:.0f}x: {target['speedup']:.2f}x, "
        f"{mark(target['speedup_met'])}\n"
        f"- size <= 1/6 of the teacher's: {target['size_fraction']:.3f} "
        f"({1 / max(target['size_fraction'], 1e-9):.2f}x smaller), {mark(target['size_met'])}\n"
        f"- accuracy within {100 * TARGET['accuracy_drop_at_most']:.1f} points: "
        f"{100 * target['accuracy_delta']:+.2f} points, {mark(target['accuracy_met'])}\n"
        "\nThe final artifact is the first of these candidates, most compressed first, that meets all three "
        "(the first when none does):\n\n"
        "| candidate | speed-up | size fraction | accuracy delta (points) | all met |\n|---|---|---|---|---|\n"
        + "".join(
            f"| {c['artifact']} | {c['speedup']:.2f}x | {c['size_fraction']:.3f} | {100 * c['accuracy_delta']:+.2f} "
            f"| {'yes' if c['met'] else 'no'} |\n"
            for c in target.get("candidates", [])
        )
    )


def _settings_markdown(recipe: Recipe, settings: TextRecipeSettings) -> str:
    lines = ["", "Options (also in `report_settings.json`):", ""]
    if settings.command:
        lines += ["```", " ".join(settings.command), "```", ""]
    for key, value in asdict(settings).items():
        if key != "command":
            lines.append(f"- `{key}`: `{json.dumps(value)}`")
    seconds = {}
    for step, _ in recipe.steps:
        done = recipe.step_dir(step) / "done.json"
        if done.is_file():
            seconds[step] = json.loads(done.read_text())["seconds"]
    if seconds:
        lines += ["", "Step wall times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())]
    return "\n".join(lines) + "\n"


def hub_problem(models: dict[str, str], dataset: str | None = None, timeout: float = 10.0) -> str | None:
    """Why the Hub models (``{option: name}``; local paths are skipped) or ``dataset`` cannot be had, or None.

    With ``HF_HUB_OFFLINE`` set, the models must be in the local Hugging Face cache; otherwise the Hub must answer.
    """
    from huggingface_hub import HfApi, constants, try_to_load_from_cache
    from huggingface_hub.errors import RepositoryNotFoundError

    hub = {option: name for option, name in models.items() if not is_local(name)}
    if constants.HF_HUB_OFFLINE:
        missing = [
            f"{option} {name}" for option, name in hub.items() if try_to_load_from_cache(name, "config.json") is None
        ]
        return (
            f"HF_HUB_OFFLINE is set and {', '.join(missing)} are not in the local Hugging Face cache"
            if missing
            else None
        )
    api = HfApi()
    checks = [(option, name, api.model_info) for option, name in hub.items()]
    if dataset is not None:
        checks.append(("--dataset", dataset, api.dataset_info))
    for option, name, info in checks:
        try:
            info(name, timeout=timeout)
        except RepositoryNotFoundError:
            return f"{option} {name} is not on the Hugging Face Hub (or is private)"
        except Exception as error:  # connection refused, name resolution, timeout, proxy errors
            return f"the Hugging Face Hub is unreachable ({type(error).__name__}: {error})"
    return None
