"""The teacher-logits cache on disk: written whole under a lock, verified when read, rebuilt when damaged.

An entry ``teacher_logits_<key>_<format>/`` holds each process's part (``.npy`` arrays) and a ``meta.json`` with the
key, the storage format, the examples, the classes, the parts' first examples and every file's size and checksum.
Building takes the per-entry file lock ``teacher_logits_<key>_<format>.lock`` (held by rank 0 for all processes of a
DDP fit), so independent fits sharing ``teacher_cache_dir`` build an entry once: the others wait and then read it.
Each build writes into its own temporary folder, which replaces the entry in one rename when complete.

On read, a missing or unreadable ``meta.json``, a missing, truncated or overwritten file, an array of the wrong dtype
or shape, or a non-finite logit makes the entry be rebuilt, with a warning naming the file; it is never trained on.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from filelock import Timeout

from lightning_distill.core.atomic import WriteError, clean_temporaries, replace_folder, write_json
from lightning_distill.core.cache_files import META, entry_lock, read_entry, record_files
from lightning_distill.core.teacher_cache._ranks import barrier, gather, raise_on_every_rank, rank_and_world
from lightning_distill.core.teacher_cache.logits import Part, StorageFormat, TeacherLogits, open_part

_POLL_SECONDS = 5.0  # how often the processes of a DDP fit meet while rank 0 waits for another fit's lock

Build = Callable[[Path], tuple[Part | None, int]]


def verified(folder: Path, key: str, storage: StorageFormat) -> tuple[TeacherLogits | None, str | None]:
    """The cache in ``folder``, memory-mapped, where it is complete and sound: ``(logits, None)``; ``(None, None)``
    where there is no ``folder``; ``(None, problem)`` where something is wrong, the problem naming the file."""
    meta, problem = read_entry(folder)
    if meta is None:
        return None, problem
    if meta.get("key") != key or meta.get("storage") != storage.name:
        return None, f"{folder / META} describes another cache (key {meta.get('key')}, format {meta.get('storage')})"
    try:
        parts = [open_part(folder, int(start), storage, int(meta["classes"])) for start in meta["starts"]]
        logits = TeacherLogits(parts, storage, int(meta["classes"]))
        examples = int(meta["examples"])
    except (KeyError, TypeError, ValueError) as error:
        return None, f"{error} (in {folder})" if str(folder) not in str(error) else str(error)
    if len(logits) != examples:
        return None, f"{folder} holds {len(logits)} examples, its {META} says {examples}"
    return logits, None


@contextlib.contextmanager
def rank_zero_lock(folder: Path) -> Iterator[None]:
    """Hold the lock of the entry ``folder`` for every process of this fit: rank 0 takes it, the others wait for it.

    Rank 0 tries for a few seconds at a time and every process meets after each try, so a DDP fit waiting for another
    fit's build never sits in one collective call long enough to time out.
    """
    rank = rank_and_world()[0]
    lock = entry_lock(folder) if rank == 0 else None
    told = False
    while True:
        got = True
        if lock is not None:
            try:
                lock.acquire(timeout=_POLL_SECONDS)
            except Timeout:
                got = False
        if gather(got)[0]:
            break
        if not told and lock is not None:
            warnings.warn(f"waiting for another process building {folder} (it holds {lock.lock_file})", stacklevel=3)
            told = True
    try:
        yield
    finally:
        if lock is not None:
            lock.release()


def _not_shared(what: str, seen: list[bool], folder: Path) -> None:
    if not all(seen):
        ranks = [rank for rank, flag in enumerate(seen) if not flag]
        raise FileNotFoundError(
            f"teacher_cache_dir: {what} {folder} is not visible from rank(s) {ranks} of {len(seen)}; put "
            "teacher_cache_dir on storage every node shares, or leave it unset to gather the logits over the network"
        )


def _write(final: Path, build: Build, meta: dict) -> None:
    """Run ``build`` into a fresh temporary folder (rank 0's, shared by every rank) that then replaces ``final``."""
    rank = rank_and_world()[0]
    failed, built = None, False
    try:
        with contextlib.ExitStack() as stack:
            mine = stack.enter_context(replace_folder(final)) if rank == 0 else None
            temporary = Path(gather(None if mine is None else str(mine))[0])
            _not_shared("the folder", gather(temporary.is_dir()), temporary)
            part, classes = build(temporary)
            starts = [start for start in gather(None if part is None else part.start) if start is not None]
            barrier()  # every part is flushed
            built = True
            if rank == 0:
                files = record_files(temporary)
                write_json(temporary / META, {**meta, "classes": classes, "starts": starts, "files": files})
    except WriteError as error:
        if not built:
            raise
        failed = str(error)  # rank 0's meta.json or rename; the other processes wait at the next collective call
    raise_on_every_rank(failed)


def load_or_build(
    final: Path, key: str, storage: StorageFormat, examples: int, build: Build
) -> tuple[TeacherLogits, bool]:
    """The cache entry ``final``: read where it is sound, else built by ``build(folder)`` (this process's part and the
    teacher's classes), under the entry's lock. Returns the logits and whether they were read."""
    rank = rank_and_world()[0]
    with rank_zero_lock(final):
        logits, problem = verified(final, key, storage)
        states = gather("sound" if logits is not None else problem)
        if all(state == "sound" for state in states):
            return logits, True
        if "sound" in states and None in states:
            _not_shared("the cache", [state is not None for state in states], final)
        for where, state in enumerate(states):
            if state not in ("sound", None) and where == rank:
                warnings.warn(f"teacher logits cache: {state}; computing the logits again", stacklevel=3)
        if rank == 0:
            clean_temporaries(final.parent)  # left by fits that were killed while building
        _write(final, build, {"key": key, "storage": storage.name, "examples": examples})
        logits, problem = verified(final, key, storage)
        _not_shared("the cache", gather(final.exists()), final)
        raise_on_every_rank(problem)
        return logits, False
