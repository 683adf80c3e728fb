"""A folder whose disk can be filled: a real 1 MiB tmpfs (when this process may mount one), or ENOSPC injected into the
flush that :mod:`lightning_distill.core.atomic` does before each rename (everywhere)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

FILLER = "filler"


class Disk:
    """``folder`` on a disk that :meth:`fill` makes full and :meth:`free` empties again."""

    def __init__(self, folder: Path, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
        self.folder, self.kind, self.full = folder, kind, False
        if kind == "enospc":
            flush = os.fsync

            def fsync(fd: int) -> None:
                if self.full:
                    raise OSError(errno.ENOSPC, "No space left on device")
                flush(fd)

            monkeypatch.setattr(os, "fsync", fsync)

    def fill(self) -> None:
        self.full = True
        if self.kind == "tmpfs":
            with (self.folder / FILLER).open("ab", buffering=0) as filler:
                try:
                    while True:
                        filler.write(b"\0" * 4096)
                except OSError as error:
                    assert error.errno == errno.ENOSPC

    def free(self) -> None:
        self.full = False
        (self.folder / FILLER).unlink(missing_ok=True)

    def files(self, folder: Path | None = None) -> list[str]:
        """Every path under ``folder`` (default the disk's), relative to it, sorted; the filler left out."""
        root = folder or self.folder
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.name != FILLER)


def _mount(folder: Path) -> str | None:
    """Mount a 1 MiB tmpfs at ``folder``; None, or why it could not be."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "mounting a tmpfs needs Linux and root"
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    return None if result.returncode == 0 else f"mount refused: {result.stderr.strip()}"


@pytest.fixture(params=["tmpfs", "enospc"], name="disk")
def disk_fixture(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Disk]:
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "tmpfs":
        refused = _mount(folder)
        if refused is not None:
            pytest.skip(refused)
    try:
        yield Disk(folder, request.param, monkeypatch)
    finally:
        if request.param == "tmpfs":  # lazily: a writer that failed may still hold a file open until collected
            subprocess.run(["umount", "--lazy", str(folder)], check=True)
