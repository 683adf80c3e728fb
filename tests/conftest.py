"""Shared fixtures: paths to ../shared and a quiet, tiny Trainer factory."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch

# The tests' models are tiny: one intra-op thread runs them several times faster than two on a 2-core machine.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MNIST10K = SHARED / "data" / "mnist10k"


@pytest.fixture(autouse=True, scope="session")
def _token_cache_in_a_temporary_folder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Text data modules write their token cache under the session's temporary folder, never the user's home."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LIGHTNING_DISTILL_CACHE", str(tmp_path_factory.mktemp("lightning_distill_cache")))
        yield


@pytest.fixture(autouse=True)
def _quiet_and_seeded() -> None:
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    logging.getLogger("lightning.fabric").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning)
    torch.manual_seed(0)


@pytest.fixture
def lightning_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Lightning's rank-zero messages (its logger does not propagate to the root logger caplog watches)."""
    logger = logging.getLogger("lightning.pytorch")
    logger.addHandler(caplog.handler)
    caplog.set_level(logging.INFO, logger="lightning.pytorch")
    yield caplog
    logger.removeHandler(caplog.handler)


def tiny_trainer(**kwargs) -> pl.Trainer:
    """A CPU Trainer without logger, checkpoints or progress bar; ``kwargs`` override."""
    defaults = dict(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    defaults.update(kwargs)
    return pl.Trainer(**defaults)
