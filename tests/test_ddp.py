"""Distillation under Lightning's DDP strategy on 2 CPU processes (gloo) gives the same cached-logit loss as 1."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer

SCRIPT = Path(__file__).with_name("ddp_distill.py")


def _run(folder: Path, devices: int, out: Path) -> list[dict]:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), str(devices), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(devices)]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_ddp_two_processes_match_one(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tokenizer")
    write_data(tmp_path / "data", sizes=(48, 12, 12))
    write_bert(tmp_path / "teacher", layers=4, labels=INTENTS)

    (single,) = _run(tmp_path, 1, tmp_path / "one")
    ranks = _run(tmp_path, 2, tmp_path / "two")

    assert single["world_size"] == 1 and all(r["world_size"] == 2 for r in ranks)
    for rank in ranks:
        # every rank holds the teacher's logits of the whole training set, identical to one process's
        torch.testing.assert_close(rank["cache"], single["cache"], atol=1e-5, rtol=1e-5)
        # the same student, batch and cached logits give the same loss in both set-ups
        assert rank["reference"]["cached"] == pytest.approx(single["reference"]["cached"], abs=1e-5)
        # the distributed sampler hands each rank other examples, and the cache is indexed by each example's own
        # index: cached and live teacher logits give the same loss on every batch a rank trains on
        for row in rank["rows"]:
            assert row["cached"] == pytest.approx(row["live"], abs=1e-5)
    seen = [{i for row in rank["rows"] for i in row["index"]} for rank in ranks]
    assert seen[0] and seen[1] and not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == 48


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_teacher_checkpoint_missing_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    from lightning_distill.models import MLP

    path = tmp_path / "teacher.pt"
    torch.save(MLP(num_classes=10, in_features=64, hidden_sizes=[16]).state_dict(), path)
    run = subprocess.run(
        [sys.executable, str(SCRIPT.with_name("ddp_missing_teacher.py")), str(path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode != 0
    assert "is missing on rank(s) [1] of 2" in run.stderr, run.stderr[-3000:]
