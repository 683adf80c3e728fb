"""Trials are short and many: one progress line each replaces Lightning's bars, summaries and device notes."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

QUIET_TRAINER = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
_LOGGERS = ("lightning.pytorch", "lightning.fabric", "lightning")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's loggers to warnings while the body runs (``GPU available: False`` once per fit is noise)."""
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)
