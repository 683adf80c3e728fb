"""``DistillTrainer``: Lightning's ``Trainer`` plus ``benchmark`` and ``export``, which ``lightning-distill benchmark``
and ``lightning-distill export`` run.

LightningCLI turns every Trainer method it is told about (``DistillCLI.subcommands``) into a subcommand whose
arguments are the method's signature, and calls it with the config's ``model`` and ``datamodule``; ``benchmark`` and
``export`` are such methods, so the CLI needs no private hook to run them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
import torch

from lightning_distill.core.benchmark import benchmark_artifact, benchmark_module, markdown_table, write_rows
from lightning_distill.lightning.checkpoint_io import use_atomic_checkpoints
from lightning_distill.lightning.export_data import calibration_examples, check_export_data, tensor_examples
from lightning_distill.lightning.modules.deployable import load_deployable

__all__ = ["DistillTrainer", "check_artifact", "check_benchmark_weights"]

Graph = Literal["fp32", "optimized", "int8", "int8_emb4"]
QuantPreset = Literal["default", "avx2", "avx512", "avx512_vnni", "arm64"]


class DistillTrainer(pl.Trainer):
    """A ``lightning.pytorch.Trainer`` that can also :meth:`benchmark` and :meth:`export` a trained model.

    Its checkpoints are written atomically (:class:`~lightning_distill.lightning.checkpoint_io.AtomicCheckpointIO`):
    a save
    that fails (a full disk) keeps the previous ``best.ckpt`` loadable. A ``CheckpointIO`` in ``plugins`` is used
    instead.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        use_atomic_checkpoints(self.strategy, kwargs.get("plugins"))

    def benchmark(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        name: str = "model",
        output: str = "runs/benchmark.json",
        split: str = "test",
        warmup: int = 10,
        iterations: int = 100,
        weights: Literal["checkpoint", "config"] = "checkpoint",
        num_threads: int | None = None,
        artifact: str | None = None,
        graph: str = "model_quantized.onnx",
        providers: list[str] | None = None,
    ) -> None:
        """Measure accuracy, parameters, size on disk, batch-1 latency and throughput of a trained model or artifact.

        Args:
            model: The LightningModule of the config; its ``student`` (distillation) or ``model`` is measured.
            datamodule: The data module whose ``split`` is measured.
            ckpt_path: Checkpoint whose weights the measured model gets (a structurally pruned one resizes its
                layers); required unless ``weights`` is ``config``.
            name: Row name in the report.
            output: JSON file of benchmark rows; a row with the same name is replaced, others are kept.
            split: Data split to measure accuracy on.
            warmup: Untimed calls before the latency measurement.
            iterations: Timed batch-1 calls.
            weights: ``checkpoint``: measure the weights of ``ckpt_path``. ``config``: measure the weights the config's
                classes load themselves (a fine-tuned Hugging Face checkpoint given to ``from_pretrained``); the row
                says ``"weights": "config"``.
            num_threads: PyTorch intra-op threads during the measurement, recorded in the row; None takes the
                process's count (the CLI sets it from ``--num_threads``, 1 unless given for ``benchmark``).
            artifact: Measure this artifact instead of the model: an export folder (``lightning-distill export``),
                an ``.onnx`` file, or a ``.pt`` of ``save_quantized`` (rebuilt on the config's model, resized by
                ``ckpt_path`` where it was pruned). The row's ``weights`` is the artifact's path.
            graph: With an export folder: the graph to measure (``model.onnx``, ``model_optimized.onnx``,
                ``model_quantized.onnx``, ``model_quantized_emb4.onnx``).
            providers: ONNX Runtime execution providers of ONNX artifacts; None: ``["CPUExecutionProvider"]``.
        """
        check_benchmark_weights(ckpt_path, weights, artifact)
        datamodule.setup("test")
        options = {
            "name": name,
            "split": split,
            "num_threads": torch.get_num_threads() if num_threads is None else num_threads,
            "warmup": warmup,
            "iterations": iterations,
        }
        if artifact is not None:
            check_artifact(artifact)
            float_model = load_deployable(model, ckpt_path, what="ckpt_path") if artifact.endswith(".pt") else None
            providers = providers or ["CPUExecutionProvider"]
            row = benchmark_artifact(
                artifact, datamodule, float_model=float_model, graph=graph, providers=providers, **options
            )
            source = artifact
        else:
            row = benchmark_module(load_deployable(model, ckpt_path, what="ckpt_path"), datamodule, **options)
            source = ckpt_path if weights == "checkpoint" else "config"
        rows = write_rows([{**row.to_dict(), "weights": source}], output)
        print(markdown_table(rows))
        print(f"wrote {len(rows)} rows to {output}")

    def export(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        folder: str = "runs/export",
        graphs: list[Graph] | None = None,
        quantization: QuantPreset = "default",
        weights: Literal["checkpoint", "config"] = "checkpoint",
        measure: bool = False,
        split: str = "test",
        iterations: int = 100,
        num_threads: int | None = None,
        overwrite: bool = False,
    ) -> None:
        """Write a trained classifier to a folder that ``load_exported`` loads (optimum and transformers too, for text).

        With a text data module (one with a tokenizer) the folder holds ``model.onnx`` (fp32),
        ``model_optimized.onnx``, ``model_quantized.onnx`` (int8) and ``model_quantized_emb4.onnx`` (int8, 4-bit
        embeddings), ``config.json`` with the data's label names, the tokenizer's files and a model card
        (``README.md``). With an image or tensor data module (MNIST, digits) it holds ``model.onnx`` and
        ``model_quantized.onnx`` (static int8, calibrated on the first test examples), ``config.json`` with the label
        names and the input's shape, ``preprocessor_config.json`` with the data's image normalization where it has
        one, and the model card (:func:`~lightning_distill.core.export.export_tensor_classifier`).

        Args:
            model: The LightningModule of the config; its ``student`` (distillation) or ``model`` is exported.
            datamodule: A text data module (its tokenizer, label names, ``max_length`` and first texts of ``split`` go
                into the folder), or one of tensors (its label names, ``preprocessing``, first inputs of ``split`` and
                the validation inputs that calibrate the int8 graph).
            ckpt_path: Checkpoint whose weights are exported (a structurally pruned one resizes the layers);
                required unless ``weights`` is ``config``.
            folder: Output folder: new, empty or a previous export (replaced as a whole, so no graph of it remains).
            graphs: Which graphs to write (``fp32``, ``optimized``, ``int8``, ``int8_emb4``: text only); None: all
                four for text, ``fp32`` and ``int8`` for tensors.
            quantization: ONNX Runtime int8 settings: ``default`` (per-tensor int8 weights) or a CPU family's preset
                as optimum's ``AutoQuantizationConfig`` has it (``avx2``, ``avx512``, ``avx512_vnni``, ``arm64``).
            weights: ``checkpoint``: the weights of ``ckpt_path``; ``config``: those the config's classes load.
            measure: Benchmark each graph on ``split`` (accuracy, latency) and put the figures in the model card.
            split: Data split of ``measure``, whose first examples trace and check the graphs.
            iterations: Timed batch-1 calls of ``measure``.
            num_threads: Intra-op threads of ``measure``; None takes the process's count (the CLI's ``--num_threads``).
            overwrite: Replace ``folder`` even where it holds other files than a previous export (all are deleted).
        """
        from lightning_distill.core.export.integrity import check_export_target

        check_benchmark_weights(ckpt_path, weights, command="export")
        check_export_target(folder, overwrite)  # before the checkpoint is loaded
        text = getattr(datamodule, "tokenizer", None) is not None
        check_export_data(datamodule, split, text=text, measure=measure)
        if not text and "int8_emb4" in (graphs or ()):
            raise ValueError(
                f"--graphs int8_emb4 quantizes a text model's embedding tables, but {type(datamodule).__name__} holds "
                "no text: choose of fp32, optimized, int8"
            )
        deployable = load_deployable(model, ckpt_path, what="ckpt_path")
        options = {
            "graphs": graphs or None,
            "quantization": quantization,
            "provenance": {
                "model": f"{type(deployable).__name__} of {type(model).__name__}",
                "weights": ckpt_path or "loaded by the config's classes (--weights config)",
                "exported by": "lightning-distill export",
            },
            "overwrite": overwrite,
        }
        written = (_export_text if text else _export_tensor)(deployable, datamodule, folder, split, **options)
        if measure:
            _measure_export(folder, datamodule, [p.name for p in written.values()], split, iterations, num_threads)
        print(f"wrote {', '.join(sorted(p.name for p in Path(folder).iterdir()))} to {folder}")


def _quant_config(preset: str, mode: Literal["dynamic", "static"]) -> Any:
    from lightning_distill.core.export import OrtQuantConfig

    return OrtQuantConfig(mode=mode) if preset == "default" else OrtQuantConfig.for_hardware(preset, mode)  # type: ignore[arg-type]


def _export_text(
    model: torch.nn.Module, datamodule: pl.LightningDataModule, folder: str, split: str, **options: Any
) -> dict[str, Path]:
    """A text classifier's export folder, with the data module's tokenizer and its first texts of ``split``."""
    from lightning_distill.core.export import GRAPH_FILES, export_text_classifier

    return export_text_classifier(
        model,
        datamodule.tokenizer,
        folder,
        datamodule.benchmark_data(split)[0][:8],
        graphs=options.pop("graphs") or list(GRAPH_FILES),
        quantization=_quant_config(options.pop("quantization"), "dynamic"),
        id2label=getattr(datamodule, "id2label", None),
        max_length=getattr(datamodule, "max_length", None),
        **options,
    )


def _export_tensor(
    model: torch.nn.Module, datamodule: pl.LightningDataModule, folder: str, split: str, **options: Any
) -> dict[str, Path]:
    """An image or tensor classifier's export folder: its first 32 examples of ``split`` trace and check the graphs,
    32 of another split (:func:`~lightning_distill.lightning.export_data.calibration_examples`) calibrate int8."""
    from lightning_distill.core.export import export_tensor_classifier

    example = tensor_examples(datamodule, split)
    if example is None:
        raise ValueError(f"{type(datamodule).__name__} has no examples in --split {split}: choose a split it has")
    graphs = options.pop("graphs") or ("fp32", "int8")
    calibration = None
    if "int8" in graphs:
        calibration, calibrated_on = calibration_examples(datamodule, split)
        options["provenance"]["int8 calibrated on"] = (
            f"the first {len(calibration)} examples of the {calibrated_on!r} split"
        )
    return export_tensor_classifier(
        model,
        folder,
        example,
        calibration_inputs=calibration,
        graphs=graphs,
        quantization=_quant_config(options.pop("quantization"), "static"),
        id2label=getattr(datamodule, "id2label", None),
        preprocessing=getattr(datamodule, "preprocessing", None),
        **options,
    )


def _measure_export(
    folder: str, datamodule: pl.LightningDataModule, graphs: list[str], split: str, iterations: int, threads: int | None
) -> None:
    """Benchmark each of ``graphs`` of the export ``folder`` on ``split`` and put the rows in its model card."""
    from lightning_distill.core.benchmark import benchmark_exported
    from lightning_distill.core.export import add_measurements

    threads = torch.get_num_threads() if threads is None else threads
    rows = {
        graph: benchmark_exported(
            folder, datamodule, name=graph, graph=graph, split=split, iterations=iterations, num_threads=threads
        ).to_dict()
        for graph in graphs
    }
    add_measurements(folder, rows)
    print(markdown_table(list(rows.values())))


def check_artifact(artifact: str) -> None:
    """Refuse an artifact that is not there, or of a kind ``benchmark`` cannot load.

    Raises:
        FileNotFoundError: nothing at ``artifact``.
        ValueError: a file that is no ``.onnx`` or ``.pt``.
    """
    path = Path(artifact)
    if not path.exists():
        raise FileNotFoundError(f"--artifact {artifact} does not exist")
    if path.is_file() and path.suffix not in (".onnx", ".pt"):
        raise ValueError(
            f"--artifact {artifact}: an artifact is an export folder, an .onnx file or a .pt of save_quantized"
        )


def check_benchmark_weights(
    ckpt_path: str | None, weights: str, artifact: str | None = None, command: str = "benchmark"
) -> None:
    """Refuse a benchmark (or export) that would measure untrained weights, or that names two sources of weights.

    With an ``artifact``, the artifact holds the weights: ``ckpt_path`` is optional (it only resizes the model a
    pruned ``.pt`` is rebuilt on).

    Raises:
        ValueError: ``weights`` is ``checkpoint`` and there is no ``ckpt_path``, or ``config`` and there is one.
    """
    if weights not in ("checkpoint", "config"):
        raise ValueError(f"weights must be 'checkpoint' or 'config', got {weights!r}")
    verb, done = {"benchmark": ("measure", "measured"), "export": ("export", "exported")}[command]
    if artifact is not None:
        if weights == "config":
            raise ValueError(f"--artifact {artifact} holds its own weights: drop --weights config")
        return
    if weights == "checkpoint" and ckpt_path is None:
        raise ValueError(
            f"{command} needs the trained weights: pass --ckpt_path CHECKPOINT (the best.ckpt of `lightning-distill "
            "fit` with this config); for a model whose config already loads trained weights (a fine-tuned Hugging "
            f"Face checkpoint), pass --weights config. Without either, the model would be {done} as initialized."
        )
    if weights == "config" and ckpt_path is not None:
        raise ValueError(
            f"--weights config {verb}s the weights the config loads, but --ckpt_path {ckpt_path} was given too; "
            f"drop --weights config to {verb} the checkpoint, or drop --ckpt_path"
        )
