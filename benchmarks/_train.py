"""What the benchmark scripts share for the models they train themselves: a quiet one-process CPU trainer."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl


def quiet_trainer(epochs: int, **options: Any) -> pl.Trainer:
    """A CPU ``Trainer`` with no logger, checkpoints, progress bar, model summary or sanity validation; ``options``
    add to or override these (``logger=``, ``callbacks=``, ``limit_val_batches=0``, ...)."""
    settings: dict[str, Any] = {
        "max_epochs": epochs,
        "accelerator": "cpu",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "num_sanity_val_steps": 0,
    }
    return pl.Trainer(**{**settings, **options})
