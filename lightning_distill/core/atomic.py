"""Result files written whole or not at all: a temporary beside the target, flushed to disk, then renamed over it.

A rename within one folder is atomic on POSIX file systems (and ``os.replace`` on Windows), so a reader sees the old
file or the new one, never half of one; a write that fails (a full disk, an interrupt) leaves the previous file as it
was and removes its temporary. This is the discipline of SQLite's and git's writers. Folders (a pruned model, an
export) are written under a temporary name beside the target and swapped in by two renames.

Temporaries are named ``.<name>.<pid>-<random>.tmp``; :func:`clean_temporaries` removes those of processes that are no
longer running (an interrupted run's), never a live writer's.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "WriteError",
    "atomic_path",
    "clean_temporaries",
    "replace_folder",
    "staged_file",
    "write_bytes",
    "write_json",
    "write_text",
    "write_torch",
]

_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


class WriteError(OSError):
    """Writing a result file failed; the previous file (if any) is unchanged and no temporary is left."""


def _temporary_beside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")


def _fsync(path: Path) -> None:
    """Flush ``path`` (a file or a folder) to disk; folders where the platform cannot open them are skipped."""
    flags = os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0)
    try:
        fd = os.open(path, flags)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:  # folders on some file systems refuse fsync (EINVAL); a file's refusal is real
        if not path.is_dir():
            raise
        del error
    finally:
        os.close(fd)


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            _fsync(path)
    for path in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        _fsync(path)
    _fsync(folder)


def _write_error(path: Path, error: OSError) -> WriteError:
    cause = "no space left on device" if error.errno == errno.ENOSPC else (error.strerror or str(error))
    return WriteError(
        error.errno or errno.EIO,
        f"{cause} while writing {str(path)!r}; nothing was changed there (the previous version, if any, is kept). "
        "Free some space or choose another folder, then run again",
    )


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on success it is flushed and renamed to ``path``.

    For writers that take a path (``torch.save``, ``onnx.save``, ``fig.savefig``)::

        with atomic_path("model.pt") as temporary:
            torch.save(state, temporary)

    The temporary may be written as a file or created as a folder. Whatever the block raises, the temporary is
    removed and ``path`` is left as it was; an ``OSError`` (a full disk) becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    try:
        yield temporary
        if not temporary.exists():
            raise FileNotFoundError(errno.ENOENT, f"nothing was written to the temporary of {str(path)!r}")
        _fsync_tree(temporary) if temporary.is_dir() else _fsync(temporary)
        if temporary.is_dir() and path.exists():
            _swap_folder(temporary, path)
        else:
            os.replace(temporary, path)
        _fsync(path.parent)
    except OSError as error:
        _remove(temporary)
        if isinstance(error, WriteError):
            raise
        raise _write_error(path, error) from error
    except BaseException:
        _remove(temporary)
        raise


def _swap_folder(new: Path, target: Path) -> None:
    """Put folder ``new`` at ``target``: the old one is renamed aside, the new one in, then the old one deleted."""
    old = _temporary_beside(target)
    os.replace(target, old)
    try:
        os.replace(new, target)
    except OSError:
        os.replace(old, target)
        raise
    _remove(old)


@contextlib.contextmanager
def replace_folder(folder: str | Path) -> Iterator[Path]:
    """A fresh temporary folder beside ``folder`` to fill; on success it replaces ``folder`` as a whole.

    A reader sees the old folder or the new one, never a mix: files of the old folder that the new one lacks are gone
    with it. On failure the temporary is removed and ``folder`` is unchanged.
    """
    with atomic_path(folder) as temporary:
        temporary.mkdir()
        yield temporary


@contextlib.contextmanager
def staged_file(path: str | Path) -> Iterator[Path]:
    """``path``'s name inside a fresh temporary folder beside it; on success what was written there moves beside it.

    For writers that add side files named after their target (an ONNX graph over 2 GB and its external data, e.g.
    ``model.onnx.data``, which the graph references by name): everything is written under its final name, then each
    file is flushed and renamed beside ``path``, the side files first and ``path`` last, so the file appears only once
    what it references is in place. The folder is removed whatever happens; on failure ``path`` is left as it was and
    an ``OSError`` (a full disk) becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = _temporary_beside(path)
    try:
        folder.mkdir()
        staged = folder / path.name
        yield staged
        if not staged.is_file():
            raise FileNotFoundError(errno.ENOENT, f"nothing was written to the temporary of {str(path)!r}")
        sides = sorted(p for p in folder.iterdir() if p != staged)
        for written in (*sides, staged):
            _fsync_tree(written) if written.is_dir() else _fsync(written)
        for side in sides:
            target = path.with_name(side.name)
            _swap_folder(side, target) if side.is_dir() and target.exists() else os.replace(side, target)
        os.replace(staged, path)
        _fsync(path.parent)
    except OSError as error:
        if isinstance(error, WriteError):
            raise
        raise _write_error(path, error) from error
    finally:
        _remove(folder)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (see the module docstring); returns ``path``."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_bytes(data)
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, value: Any, *, indent: int | None = 2, default: Callable | None = None) -> Path:
    """Write ``value`` as JSON (with a final newline) to ``path`` atomically; returns ``path``."""
    return write_text(path, json.dumps(value, indent=indent, default=default) + "\n")


def write_torch(path: str | Path, value: Any) -> Path:
    """``torch.save(value)`` to ``path`` atomically; returns ``path``.

    It is written through a Python file: torch's own file writer reports a full disk as a ``RuntimeError`` ("iostream
    error") that names no cause, a Python file as the ``OSError`` (ENOSPC) that becomes a :class:`WriteError`.
    """
    import torch  # only this writer needs it

    path = Path(path)
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        torch.save(value, file)
    return path


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def clean_temporaries(folder: str | Path, recursive: bool = False) -> list[Path]:
    """Remove the temporaries that writers which are no longer running left in ``folder``; returns what was removed.

    A temporary of a live process (this one included) is kept: it may still be written.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.rglob(".*.tmp") if recursive else folder.glob(".*.tmp"):
        match = _TEMPORARY.match(path.name)
        if match is not None and not _running(int(match["pid"])):
            _remove(path)
            removed.append(path)
    return removed
