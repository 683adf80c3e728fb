"""cache_teacher_logits with the shipped digits and MNIST configs: the teacher runs once for the cache, never in a
training step, and not at all in a second fit that finds the cache on disk."""

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import yaml
from conftest import MNIST10K, ROOT

from lightning_distill.lightning.cli import cli_main


class TeacherCalls(pl.Callback):
    """Counts the teacher's forward passes inside training steps and outside them (a forward hook on the teacher)."""

    def __init__(self) -> None:
        self.calls = {"training step": 0, "elsewhere": 0}
        self._phase = "elsewhere"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        pl_module.teacher.register_forward_hook(self._count)

    def _count(self, *_: Any) -> None:
        self.calls[self._phase] += 1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, idx: int) -> None:
        self._phase = "training step"

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        self._phase = "elsewhere"


def _fit(config: str, tmp_path: Path, data: dict) -> tuple[dict[str, int], int]:
    """One fit of ``config`` with cache_teacher_logits on, a few steps, no validation (the teacher's validation pass
    would also count); returns the teacher's calls and the number of training examples."""
    spec = yaml.safe_load((ROOT / config).read_text())
    spec.pop("seed_everything", None)
    spec["model"]["init_args"].update(
        teacher_checkpoint=None,
        cache_teacher_logits=True,
        teacher_cache_dir=str(tmp_path / "cache"),
        teacher_cache_batch_size=256,
    )
    spec["data"]["init_args"].update(data)
    spec["trainer"].update(
        max_steps=3,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        default_root_dir=str(tmp_path / "runs"),
        callbacks=[{"class_path": f"{__name__}.TeacherCalls"}],
    )
    cli = cli_main({"subcommand": "fit", "fit": {"seed_everything": 0, **spec}})
    counter = next(c for c in cli.trainer.callbacks if isinstance(c, TeacherCalls))
    return counter.calls, len(cli.model.cached_teacher_logits)


@pytest.mark.parametrize(
    ("config", "data", "examples"),
    [
        ("configs/digits/distill.yaml", {}, 1168),
        ("configs/mnist/distill.yaml", {"root": str(MNIST10K), "download": False}, 7200),
    ],
    ids=["digits", "mnist"],
)
def test_the_teacher_runs_once_for_the_cache_and_never_in_training(
    config: str, data: dict, examples: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)
    calls, cached = _fit(config, tmp_path, data)
    assert cached == examples
    assert calls == {"training step": 0, "elsewhere": -(-examples // 256)}
    again, _ = _fit(config, tmp_path, data)  # same teacher weights (seeded) and data: the cache on disk is reused
    assert again == {"training step": 0, "elsewhere": 0}
    assert len([p for p in (tmp_path / "cache").glob("teacher_logits_*") if p.is_dir()]) == 1
