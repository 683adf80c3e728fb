"""``DistillTrainer``: Lightning's ``Trainer`` plus ``benchmark``, which ``lightning-distill benchmark`` runs.

LightningCLI turns every Trainer method it is told about (``DistillCLI.subcommands``) into a subcommand whose
arguments are the method's signature, and calls it with the config's ``model`` and ``datamodule``; ``benchmark`` is
such a method, so the CLI needs no private hook to run it.
"""

from __future__ import annotations

from typing import Literal

import lightning.pytorch as pl
import torch

from lightning_distill.benchmark import benchmark_module, markdown_table, write_rows
from lightning_distill.modules.deployable import load_deployable

__all__ = ["DistillTrainer", "check_benchmark_weights"]


class DistillTrainer(pl.Trainer):
    """A ``lightning.pytorch.Trainer`` that can also :meth:`benchmark` a trained model."""

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
    ) -> None:
        """Measure accuracy, parameters, size on disk, batch-1 latency and throughput of a trained model.

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
        """
        check_benchmark_weights(ckpt_path, weights)
        deployable = load_deployable(model, ckpt_path, what="ckpt_path")
        datamodule.setup("test")
        row = benchmark_module(
            deployable,
            datamodule,
            name=name,
            split=split,
            num_threads=torch.get_num_threads() if num_threads is None else num_threads,
            warmup=warmup,
            iterations=iterations,
        )
        rows = write_rows([{**row.to_dict(), "weights": ckpt_path if weights == "checkpoint" else "config"}], output)
        print(markdown_table(rows))
        print(f"wrote {len(rows)} rows to {output}")


def check_benchmark_weights(ckpt_path: str | None, weights: str) -> None:
    """Refuse a benchmark that would measure untrained weights, or that names two sources of weights.

    Raises:
        ValueError: ``weights`` is ``checkpoint`` and there is no ``ckpt_path``, or ``config`` and there is one.
    """
    if weights not in ("checkpoint", "config"):
        raise ValueError(f"weights must be 'checkpoint' or 'config', got {weights!r}")
    if weights == "checkpoint" and ckpt_path is None:
        raise ValueError(
            "benchmark needs the trained weights: pass --ckpt_path CHECKPOINT (the best.ckpt of `lightning-distill "
            "fit` with this config); for a model whose config already loads trained weights (a fine-tuned Hugging "
            "Face checkpoint), pass --weights config. Without either, the model would be measured as initialized."
        )
    if weights == "config" and ckpt_path is not None:
        raise ValueError(
            f"--weights config measures the weights the config loads, but --ckpt_path {ckpt_path} was given too; "
            "drop --weights config to measure the checkpoint, or drop --ckpt_path"
        )
