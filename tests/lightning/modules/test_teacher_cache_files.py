"""The teacher-logit cache on disk: damaged entries are rebuilt (never trained on), a full disk is a clear error, and
fits that share a cache folder at once build it once and train the same students as one fit alone."""

import json
import shutil
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_trainer
from tiny_text import INTENTS, text_data, write_text_task

from lightning_distill.core.cache_files import file_record
from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.modules import DistillationModule

ID2LABEL = dict(enumerate(INTENTS))
SCRIPT = Path(__file__).with_name("concurrent_distill.py")


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_task(tmp_path_factory.mktemp("text"))


def _fit(folder: Path, cache: Path) -> tuple[DistillationModule, list[int]]:
    """A fit with its teacher cache in ``cache``; returns the module and the batch sizes the teacher ran on."""
    torch.manual_seed(0)
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0, 2], id2label=ID2LABEL)
    calls: list[int] = []
    teacher.register_forward_hook(
        lambda module, args, kwargs, out: calls.append(len(kwargs["input_ids"])), with_kwargs=True
    )
    module = DistillationModule(
        student, teacher, loss=KDLoss(temperature=2.0), num_classes=3, cache_teacher_logits=True,
        teacher_cache_dir=str(cache), teacher_cache_batch_size=8,
    )  # fmt: skip
    tiny_trainer(limit_train_batches=2, limit_val_batches=0, num_sanity_val_steps=0).fit(module, text_data(folder))
    return module, calls


def _entry(cache: Path) -> Path:
    (entry,) = (path for path in cache.iterdir() if path.is_dir())
    return entry


def _files(entry: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(entry.iterdir())}


def _rerecord(entry: Path, name: str) -> None:
    """Record ``name``'s new size and checksum in meta.json, as if it had been written so (only the reader's own
    checks of the arrays can then catch it)."""
    meta = json.loads((entry / "meta.json").read_text())
    meta["files"][name] = file_record(entry / name)
    (entry / "meta.json").write_text(json.dumps(meta))


def _nan_same_size(entry: Path) -> None:
    path = entry / "logits-0.npy"
    array = np.load(path)
    data = path.read_bytes()
    nan = np.full_like(array, np.nan).tobytes()
    path.write_bytes(data[: len(data) - len(nan)] + nan)


def _nan_recorded(entry: Path) -> None:
    _nan_same_size(entry)
    _rerecord(entry, "logits-0.npy")


def _truncate(entry: Path) -> None:
    path = entry / "logits-0.npy"
    path.write_bytes(path.read_bytes()[:200])


def _object_array(entry: Path) -> None:
    np.save(entry / "logits-0.npy", np.array([object()] * 48), allow_pickle=True)
    _rerecord(entry, "logits-0.npy")


DAMAGES = {
    "nan_same_size": (_nan_same_size, r"logits-0.npy does not match the checksum"),
    "nan_recorded": (_nan_recorded, r"logits-0.npy holds non-finite logits"),
    "truncated": (_truncate, r"logits-0.npy has 200 bytes where .*meta.json records \d+ \(truncated"),
    "deleted": (lambda entry: (entry / "logits-0.npy").unlink(), r"logits-0.npy is missing"),
    "meta_emptied": (lambda entry: (entry / "meta.json").write_text(""), r"meta.json is unreadable"),
    "meta_deleted": (lambda entry: (entry / "meta.json").unlink(), r"meta.json is missing"),
    "object_dtype": (_object_array, r"logits-0.npy is not a readable .npy array"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_cache_is_rebuilt_with_a_warning_never_trained_on(folder: Path, tmp_path: Path, damage: str) -> None:
    first, ran = _fit(folder, tmp_path)
    assert sum(ran) == 48
    entry = _entry(tmp_path)
    written, logits = _files(entry), first.cached_teacher_logits.dense()  # before the damage reaches its memory map
    damaged, message = DAMAGES[damage]
    damaged(entry)
    with pytest.warns(UserWarning, match=f"teacher logits cache: .*{message}.*; computing the logits again"):
        again, ran = _fit(folder, tmp_path)
    assert sum(ran) == 48  # the teacher ran again over the whole training set
    assert _files(_entry(tmp_path)) == written  # the same entry, byte for byte
    assert torch.equal(again.cached_teacher_logits.dense(), logits)
    for (name, a), b in zip(first.student.state_dict().items(), again.student.state_dict().values(), strict=True):
        assert torch.equal(a, b) and bool(torch.isfinite(b).all()), name
    # the rebuilt entry is read back without the teacher
    _, ran = _fit(folder, tmp_path)
    assert ran == []


def test_a_full_disk_is_refused_before_the_cache_is_written(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 100, 100))
    with pytest.raises(ValueError, match=r"not enough free space in .*: it needs 4,384 bytes, 100 are free"):
        _fit(folder, tmp_path)
    # nothing half-written is left to be read: the temporary folder is gone, only the lock file stays
    assert [path.suffix for path in tmp_path.iterdir()] == [".lock"]


def _run(folder: Path, teacher_cache: Path, out: Path, ready: Path, processes: int) -> subprocess.Popen:
    command = [sys.executable, str(SCRIPT), str(folder), str(teacher_cache), str(folder / "tokens"), str(out)]
    return subprocess.Popen([*command, str(ready), str(processes)], stderr=subprocess.PIPE, text=True)


def test_two_fits_at_once_on_one_cache_build_it_once_and_train_a_single_fits_student(
    folder: Path, tmp_path: Path
) -> None:
    alone = _run(folder, tmp_path / "alone", tmp_path / "alone.pt", tmp_path / "ready_alone", 1)
    pair = [_run(folder, tmp_path / "shared", tmp_path / f"{i}.pt", tmp_path / "ready", 2) for i in (0, 1)]
    for process in (alone, *pair):
        _, stderr = process.communicate(timeout=300)
        assert process.returncode == 0, stderr[-4000:]
    single = torch.load(tmp_path / "alone.pt", weights_only=True)
    results = [torch.load(tmp_path / f"{i}.pt", weights_only=True) for i in (0, 1)]
    # one fit ran the teacher over the 48 examples, the other waited for it and read its cache
    assert single["ran"] == 48 and sorted(r["ran"] for r in results) == [0, 48]
    assert _files(_entry(tmp_path / "shared")).keys() == _files(_entry(tmp_path / "alone")).keys()
    for name, data in _files(_entry(tmp_path / "alone")).items():
        assert _files(_entry(tmp_path / "shared"))[name] == data, name
    for result in results:
        assert torch.equal(result["cache"], single["cache"])
        for name, value in single["student"].items():
            assert torch.equal(result["student"][name], value), name
