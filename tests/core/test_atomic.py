"""Atomic result files: a failed write (a full disk) leaves the previous file, no temporary, and names the path."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_distill.core import atomic
from lightning_distill.core.atomic import (
    WriteError,
    atomic_path,
    clean_temporaries,
    replace_folder,
    write_json,
    write_text,
)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_write_replaces_the_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "done.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2})
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in path.parent.iterdir()) == ["done.json"]


def test_a_full_disk_keeps_the_previous_file_and_names_the_path(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "done.json"
    write_json(path, {"step": "old"})
    monkeypatch.setattr(atomic.os, "fsync", _full_disk)
    with pytest.raises(WriteError, match=r"no space left on device while writing .*done\.json"):
        write_json(path, {"step": "new"})
    assert json.loads(path.read_text()) == {"step": "old"}
    assert [p.name for p in tmp_path.iterdir()] == ["done.json"]


def test_a_failed_first_write_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(atomic.os, "replace", _full_disk)
    with pytest.raises(WriteError) as caught:
        write_text(tmp_path / "report.md", "# report")
    assert caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_an_exception_inside_the_block_leaves_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="interrupted"), atomic_path(path) as temporary:
        temporary.write_bytes(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]


def test_replace_folder_swaps_the_whole_folder(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model_quantized.onnx").write_text("A's graph")
    with replace_folder(folder) as fresh:
        (fresh / "model.onnx").write_text("B's graph")
    assert sorted(p.name for p in folder.iterdir()) == ["model.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_replace_folder_keeps_the_old_folder_when_writing_fails(tmp_path: Path) -> None:
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model.onnx").write_text("A")
    with pytest.raises(ValueError, match="bad"), replace_folder(folder) as fresh:
        (fresh / "model.onnx").write_text("B")
        raise ValueError("bad")
    assert (folder / "model.onnx").read_text() == "A"
    assert [p.name for p in tmp_path.iterdir()] == ["export"]


def test_leftover_temporaries_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".done.json.{int(dead.stdout)}-0123abcd.tmp"
    stale.write_text("{")
    live = tmp_path / f".report.json.{os.getpid()}-89abcdef.tmp"
    live.write_text("{")
    user_file = tmp_path / ".notes.tmp"
    user_file.write_text("mine")
    assert clean_temporaries(tmp_path) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, user_file.name])
