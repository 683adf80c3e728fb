"""How cached teacher logits are stored (float32, float16, or the top-k logits of each row) and read back by index.

A cache is a list of parts, each holding the rows of a contiguous range of example indices: one part per process that
computed it. Each part is a set of ``.npy`` arrays, memory-mapped when read from disk, so a process's memory does not
grow with the training set; the rows a batch needs are copied out and decoded to float32 logits.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from lightning_distill.core.cache_files import reserve

CacheDtype = Literal["float32", "float16"]
_FLOAT16_MAX = float(np.finfo(np.float16).max)


@dataclass(frozen=True)
class StorageFormat:
    """How each row of teacher logits is stored.

    Args:
        dtype: Storage dtype of the logits: ``float16`` halves the bytes; its rounding (relative 2^-11) changes the KD
            loss by far less than 1e-3 on logits of ordinary size, and logits beyond float16's range are refused.
        top_k: Keep only the ``top_k`` largest logits of each row, their class ids and one fill value; None keeps all.
        temperature: The KD temperature the fill value is computed for (top-k only).
    """

    dtype: CacheDtype = "float16"
    top_k: int | None = None
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "float16"):
            raise ValueError(f"teacher_cache_dtype must be 'float32' or 'float16', got {self.dtype!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"teacher_cache_top_k must be >= 1 or None (keep every logit), got {self.top_k}")
        if self.temperature <= 0:
            raise ValueError(f"the KD temperature must be > 0, got {self.temperature}")

    @property
    def name(self) -> str:
        """A folder-name suffix that tells formats apart (a top-k cache's fill values depend on the temperature)."""
        return self.dtype if self.top_k is None else f"top{self.top_k}_T{self.temperature:g}_{self.dtype}"

    def check_classes(self, classes: int) -> None:
        if self.top_k is not None and self.top_k >= classes:
            raise ValueError(
                f"teacher_cache_top_k={self.top_k} keeps every one of the teacher's {classes} classes; set it below "
                f"{classes} or leave it None"
            )

    def bytes_per_example(self, classes: int) -> int:
        value = np.dtype(self.dtype).itemsize
        if self.top_k is None:
            return classes * value
        return self.top_k * (value + _class_dtype(classes).itemsize) + value

    def encode(self, logits: Tensor) -> dict[str, np.ndarray]:
        """The stored arrays of ``(rows, classes)`` float logits.

        Top-k rows keep the ``k`` largest logits ``z_i`` and set every other class to one fill value
        ``v = T * (logsumexp(z_rest / T) - log(classes - k))``, so that at the KD temperature ``T`` the rebuilt
        ``softmax(z / T)`` gives the top-k classes their exact probabilities and the other classes, together, their
        exact leftover probability, shared equally.
        """
        logits = logits.float()
        if not bool(torch.isfinite(logits).all()):
            raise ValueError("the teacher returned non-finite logits (nan or inf); they cannot be cached")
        if self.dtype == "float16" and float(logits.abs().max()) > _FLOAT16_MAX:
            raise ValueError(
                f"the teacher's logits reach {float(logits.abs().max()):.4g}, beyond float16's range "
                f"({_FLOAT16_MAX:g}); set teacher_cache_dtype: float32"
            )
        if self.top_k is None:
            return {"logits": logits.numpy().astype(self.dtype)}
        classes = logits.shape[-1]
        self.check_classes(classes)
        values, ids = logits.topk(self.top_k, dim=-1)
        rest = logits.scatter(-1, ids, float("-inf")) / self.temperature
        fill = self.temperature * (torch.logsumexp(rest, dim=-1) - math.log(classes - self.top_k))
        return {
            "values": values.numpy().astype(self.dtype),
            "classes": ids.numpy().astype(_class_dtype(classes)),
            "fill": fill.numpy().astype(self.dtype),
        }

    def decode(self, arrays: Mapping[str, np.ndarray], classes: int) -> Tensor:
        """Float32 ``(rows, classes)`` logits from stored arrays (see :meth:`encode`)."""
        if self.top_k is None:
            return torch.from_numpy(np.asarray(arrays["logits"], dtype=np.float32))
        fill = torch.from_numpy(np.asarray(arrays["fill"], dtype=np.float32))
        logits = fill[:, None].expand(len(fill), classes).clone()
        ids = torch.from_numpy(np.asarray(arrays["classes"], dtype=np.int64))
        return logits.scatter_(1, ids, torch.from_numpy(np.asarray(arrays["values"], dtype=np.float32)))


def _class_dtype(classes: int) -> np.dtype:
    return np.dtype(np.int16 if classes <= np.iinfo(np.int16).max else np.int32)


@dataclass
class Part:
    """The stored rows of examples ``start`` to ``start + len - 1``."""

    start: int
    arrays: dict[str, np.ndarray]

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))


class TeacherLogits:
    """The teacher's logits of every training example, looked up by example index.

    Args:
        parts: Parts covering examples ``0 .. examples - 1`` in order, without gaps or overlaps.
        storage: How the rows are stored.
        classes: Classes of the teacher.
    """

    def __init__(self, parts: list[Part], storage: StorageFormat, classes: int) -> None:
        self.parts = sorted(parts, key=lambda part: part.start)
        expected = 0
        for part in self.parts:
            if part.start != expected:
                raise ValueError(f"teacher logits cache: a part starts at example {part.start}, expected {expected}")
            expected += len(part)
        self.examples = expected
        self.storage = storage
        self.classes = classes
        self._starts = np.array([part.start for part in self.parts], dtype=np.int64)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.examples, self.classes)

    def __len__(self) -> int:
        return self.examples

    @property
    def nbytes(self) -> int:
        """Bytes of the stored arrays (on disk, or in memory when gathered)."""
        return sum(int(a.nbytes) for part in self.parts for a in part.arrays.values())

    def __getitem__(self, index: Tensor) -> Tensor:
        """Float32 logits of the examples ``index`` (a 1-D tensor), on the CPU."""
        wanted = index.detach().cpu().reshape(-1).numpy().astype(np.int64)
        if not len(wanted):
            return torch.empty(0, self.classes)
        if wanted.min() < 0 or wanted.max() >= self.examples:
            raise IndexError(
                f"example index {int(wanted.min())}..{int(wanted.max())} is outside the {self.examples} cached examples"
            )
        which = np.searchsorted(self._starts, wanted, side="right") - 1
        rows: dict[str, np.ndarray] = {}
        for p in np.unique(which):
            part, mask = self.parts[int(p)], which == p
            for name, array in part.arrays.items():
                if name not in rows:
                    rows[name] = np.empty((len(wanted), *array.shape[1:]), dtype=array.dtype)
                rows[name][mask] = array[wanted[mask] - part.start]
        return self.storage.decode(rows, self.classes)

    def dense(self) -> Tensor:
        """Every row, decoded: ``(examples, classes)`` float32 (for tests and small caches)."""
        return self[torch.arange(self.examples)]


def _stored_shapes(storage: StorageFormat, rows: int, classes: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    value = np.dtype(storage.dtype)
    if storage.top_k is None:
        return {"logits": ((rows, classes), value)}
    k = storage.top_k
    return {"values": ((rows, k), value), "classes": ((rows, k), _class_dtype(classes)), "fill": ((rows,), value)}


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} is not a readable .npy array ({error})") from error


def open_part(folder: Path, start: int, storage: StorageFormat, classes: int) -> Part:
    """A part written by :func:`create_part`, memory-mapped read-only, checked: every array has the stored dtype and
    shape and every stored logit is finite; a ``ValueError`` names the file otherwise."""
    arrays = {name: _load(folder / f"{name}-{start}.npy") for name in _stored_shapes(storage, 0, classes)}
    rows = len(next(iter(arrays.values())))
    for name, (shape, dtype) in _stored_shapes(storage, rows, classes).items():
        array, path = arrays[name], folder / f"{name}-{start}.npy"
        if array.dtype != dtype or array.shape != shape:
            raise ValueError(f"{path} holds {array.dtype} {array.shape}, expected {dtype} {shape}")
        if dtype.kind == "f" and not bool(np.isfinite(array).all()):
            raise ValueError(f"{path} holds non-finite logits (nan or inf)")
    return Part(start, arrays)


def create_part(folder: Path | None, start: int, rows: int, classes: int, storage: StorageFormat) -> Part:
    """Writable arrays for ``rows > 0`` examples from ``start``: memory-mapped ``.npy`` files in ``folder``, or plain
    in-memory arrays where ``folder`` is None; fill them, then flush with :func:`close_part`."""
    shapes = _stored_shapes(storage, rows, classes)
    if folder is None:
        return Part(start, {name: np.empty(shape, dtype=dtype) for name, (shape, dtype) in shapes.items()})
    arrays = {}
    for name, (shape, dtype) in shapes.items():
        path = folder / f"{name}-{start}.npy"
        arrays[name] = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
        reserve(path)  # a full disk is an OSError here, not a SIGBUS when the rows are written
    return Part(start, arrays)


def close_part(part: Part) -> None:
    """Flush a part's memory-mapped arrays to disk."""
    for array in part.arrays.values():
        if isinstance(array, np.memmap):
            array.flush()
