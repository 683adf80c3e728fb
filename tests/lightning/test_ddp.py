"""Distillation under Lightning's DDP strategy on 2 CPU processes (gloo) gives the same cached-logit loss as 1."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer

SCRIPT = Path(__file__).with_name("ddp_distill.py")


def _run(folder: Path, devices: int, out: Path, *options: str) -> list[dict]:
    run = subprocess.run(
        [sys.executable, str(SCRIPT), str(folder), str(devices), str(out), *options],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-4000:]
    # every epoch-level log is synchronised across processes: Lightning warns "use self.log(..., sync_dist=True)"
    assert "sync_dist=True" not in run.stderr, run.stderr[-4000:]
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(devices)]


def _cache_folder(cache_dir: Path) -> Path:
    (folder,) = (path for path in cache_dir.iterdir() if path.is_dir())  # beside it: its lock file
    return folder


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The tiny data and teacher, and one process's distillation with a float32 cache written to ``one_cache``."""
    folder = tmp_path_factory.mktemp("ddp")
    write_tokenizer(folder / "tokenizer")
    write_data(folder / "data", sizes=(48, 12, 12))
    write_bert(folder / "teacher", layers=4, labels=INTENTS)
    (result,) = _run(folder, 1, folder / "one", str(folder / "one_cache"), "float32")
    return folder, result


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_ddp_two_processes_match_one(single: tuple[Path, dict]) -> None:
    folder, single = single
    ranks = _run(folder, 2, folder / "two", "-", "float32")

    assert single["world_size"] == 1 and all(r["world_size"] == 2 for r in ranks)
    # one process runs the teacher on all 48 examples; each of two runs it on its own half (counted by a hook)
    assert single["cache_examples"] == 48
    assert [r["cache_examples"] for r in ranks] == [24, 24]
    for rank in ranks:
        # every rank holds the teacher's logits of the whole training set (gathered), identical to one process's
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
def test_ddp_ranks_write_their_shards_of_one_cache_folder(single: tuple[Path, dict]) -> None:
    folder, single = single
    ranks = _run(folder, 2, folder / "two_dir", str(folder / "two_cache"), "float16")

    assert [r["cache_examples"] for r in ranks] == [24, 24]
    one, two = _cache_folder(folder / "one_cache"), _cache_folder(folder / "two_cache")
    # each rank wrote its own part: examples 0-23 and 24-47
    assert sorted(p.name for p in two.glob("*.npy")) == ["logits-0.npy", "logits-24.npy"]
    assert one.name.endswith("_float32") and two.name.endswith("_float16")
    assert one.name.removesuffix("_float32") == two.name.removesuffix("_float16")  # the same key
    full = np.load(one / "logits-0.npy")
    halves = np.concatenate([np.load(two / "logits-0.npy"), np.load(two / "logits-24.npy")])
    assert full.shape == halves.shape == (48, 3) and halves.dtype == np.float16
    # the same file contents up to float16 rounding of the one-process float32 cache
    np.testing.assert_array_max_ulp(halves, full.astype(np.float16), maxulp=1)
    for rank in ranks:
        # every rank reads the whole cache, memory-mapped from both parts
        torch.testing.assert_close(rank["cache"], torch.from_numpy(halves.astype(np.float32)))
        for row in rank["rows"]:
            assert row["cached"] == pytest.approx(row["live"], abs=1e-3)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="this torch build has no torch.distributed")
def test_teacher_checkpoint_missing_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    from lightning_distill.core.models import MLP

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
