"""Cache entries that are verified when read and locked while built.

An entry is a folder of files plus a ``meta.json`` that records, for each file, its size in bytes and a BLAKE2b
checksum of its contents (:func:`record_files`). :func:`read_entry` gives the metadata back only where every recorded
file is there with its recorded size and checksum; otherwise it says which file is wrong and how (missing, truncated,
overwritten, an unreadable ``meta.json``), so the caller can rebuild the entry instead of training on it.

Builders of one entry take a per-entry file lock (:func:`entry_lock`, ``filelock``) so that a second process waits for
the first and then reads what it wrote. :func:`check_free_space` and :func:`reserve` make a full disk a clear error
before a memory-mapped file is written (a write through a memory map to a full disk kills the process with SIGBUS).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from filelock import FileLock

__all__ = [
    "META", "check_free_space", "entry_lock", "file_record", "file_sha256", "read_entry", "record_files", "reserve"
]

META = "meta.json"
_CHUNK = 1 << 20


def file_record(path: Path) -> dict[str, Any]:
    """``{"bytes": size, "blake2b": checksum}`` of the file at ``path``, read in chunks."""
    digest, size = hashlib.blake2b(digest_size=16), 0
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "blake2b": digest.hexdigest()}


def file_sha256(path: str | Path) -> str:
    """The sha256 (hex) of the file at ``path``, read in chunks (a data file may be larger than memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def record_files(folder: Path) -> dict[str, dict[str, Any]]:
    """The record of every file under ``folder`` but ``meta.json``, by its path relative to ``folder``."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() != META)
    return {path.relative_to(folder).as_posix(): file_record(path) for path in files}


def _check_files(folder: Path, records: Any) -> str | None:
    meta = folder / META
    if not isinstance(records, dict) or not records:
        return f"{meta} records no file sizes and checksums (written by an older version?)"
    for name, record in sorted(records.items()):
        path = folder / name
        if not isinstance(record, dict) or not {"bytes", "blake2b"} <= record.keys():
            return f"{meta} has no size and checksum for {name!r}"
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != record["bytes"]:
            return f"{path} has {size} bytes where {meta} records {record['bytes']} (truncated or overwritten)"
        if file_record(path)["blake2b"] != record["blake2b"]:
            return f"{path} does not match the checksum {meta} records (overwritten or corrupted)"
    return None


def read_entry(folder: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The ``meta.json`` of the entry ``folder`` where every file it records matches its size and checksum.

    Returns ``(meta, None)`` for a sound entry, ``(None, None)`` where ``folder`` does not exist, and
    ``(None, problem)`` otherwise, the problem naming the file that is wrong.
    """
    if not folder.exists():
        return None, None
    meta_path = folder / META
    if not meta_path.is_file():
        return None, f"{meta_path} is missing"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return None, f"{meta_path} is unreadable ({error})"
    if not isinstance(meta, dict):
        return None, f"{meta_path} holds a {type(meta).__name__}, not an object"
    problem = _check_files(folder, meta.get("files"))
    return (None, problem) if problem else (meta, None)


def entry_lock(folder: Path) -> FileLock:
    """The lock of the entry ``folder``: the file ``<folder>.lock`` beside it (its parent is created)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(folder.with_name(folder.name + ".lock")))


def check_free_space(folder: Path, needed: int, what: str) -> None:
    """Raise ``OSError`` (ENOSPC) naming ``folder``, the bytes needed and the bytes free, where ``needed`` > free."""
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space in {folder} for {what}: it needs {needed:,} bytes, {free:,} are free; free some "
            "space or put the cache on another disk",
        )


def reserve(path: Path) -> None:
    """Allocate the disk blocks of the whole file ``path`` now (``posix_fallocate``), so that writing it through a
    memory map cannot meet a full disk (SIGBUS); a full disk raises ``OSError`` naming the file instead.

    Where the platform or file system cannot allocate ahead, nothing is done.
    """
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        size = os.fstat(fd).st_size
        if size:
            os.posix_fallocate(fd, 0, size)
    except OSError as error:
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            raise OSError(error.errno, f"no space left on device for {size:,} bytes of {path}") from error
        if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)
