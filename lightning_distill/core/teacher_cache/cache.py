"""The teacher's logits over the training set, computed once, shared by every process and looked up by ``index``.

The training set is cut into blocks of ``batch_size`` consecutive examples (by position, which is each example's
``index``), and each process takes a contiguous run of blocks: under DDP with N processes each runs the teacher on
about 1/N of the examples. With a cache folder each process writes its rows as its own part of
``teacher_logits_<key>_<format>/`` (``.npy`` arrays) and then every process memory-maps all parts; without one, the
parts are gathered into every process's memory.

The training batches are ``(inputs, labels, index)`` or mappings with an ``index`` entry (see
:mod:`lightning_distill.core.batch`); ``index`` is each example's position in the training set.

The cache is keyed by a hash of everything the logits depend on: the teacher's weights and config, the exact inputs
the teacher sees (every block's ``index`` and input tensors: pixels, features, or token ids after tokenization and
truncation; each process hashes its own blocks and the block hashes are summed, so the key does not depend on the
number of processes) and, where the data module offers one, its ``fingerprint()`` (data files, columns, labels,
tokenizers). A changed teacher, tokenizer or input gives a new key, so a stale cache is never reused. A cache folder
is written under a per-key file lock and verified when read (sizes, checksums, finite logits): see
:mod:`lightning_distill.core.teacher_cache._folder`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from lightning_distill.core.batch import batch_index, is_index, logits_of, teacher_inputs, to_device
from lightning_distill.core.cache_files import check_free_space
from lightning_distill.core.teacher_cache._folder import load_or_build
from lightning_distill.core.teacher_cache._ranks import gather, raise_on_every_rank, rank_and_world
from lightning_distill.core.teacher_cache.logits import (
    Part,
    StorageFormat,
    TeacherLogits,
    close_part,
    create_part,
)


def update_digest(digest: Any, tensor: Tensor) -> None:
    """Feed ``tensor``'s shape, dtype and bytes into the hashlib ``digest``."""
    tensor = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes())


def model_digest(model: nn.Module) -> str:
    """A hash of a model's class, config (where it has one) and every tensor of its state dict."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if isinstance(value, Tensor):
            update_digest(digest, value)
    return digest.hexdigest()


def batch_digest(batch: Any) -> int:
    """A hash of one batch's ``index`` and teacher inputs (a tensor or a dict of tensors), as an integer."""
    digest = hashlib.sha256()
    update_digest(digest, batch_index(batch))
    inputs = teacher_inputs(batch)
    inputs = inputs if isinstance(inputs, Mapping) else {"": inputs}
    for key in sorted(inputs):
        digest.update(key.encode())
        update_digest(digest, inputs[key])
    return int(digest.hexdigest(), 16)


# --- which examples each process runs the teacher on ---------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    """This process's blocks: ``rank``'s contiguous share of ``ceil(examples / batch_size)`` blocks."""

    examples: int
    batch_size: int
    rank: int = 0
    world: int = 1

    @property
    def blocks(self) -> int:
        return -(-self.examples // self.batch_size)

    def _first_block(self, rank: int) -> int:
        return self.blocks * rank // self.world

    @property
    def start(self) -> int:
        return min(self._first_block(self.rank) * self.batch_size, self.examples)

    @property
    def stop(self) -> int:
        return min(self._first_block(self.rank + 1) * self.batch_size, self.examples)

    @property
    def most_blocks(self) -> int:
        """The most blocks any process runs; every process runs the teacher this many times."""
        return max(self._first_block(r + 1) - self._first_block(r) for r in range(self.world))

    def batches(self) -> list[list[int]]:
        return [
            list(range(s, min(s + self.batch_size, self.stop))) for s in range(self.start, self.stop, self.batch_size)
        ]


def _check_deterministic(datamodule: Any, loader: DataLoader) -> None:
    for owner, what in ((datamodule, "the data module"), (loader.dataset, "the training dataset")):
        if owner is not None and getattr(owner, "deterministic", True) is False:
            raise ValueError(
                f"cache_teacher_logits needs the same inputs every epoch, but {what} ({type(owner).__name__}) says "
                "its inputs are not deterministic (random augmentation?); set cache_teacher_logits: false"
            )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)):
        return isinstance(b, (tuple, list)) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def _check_batch(batch: Any, positions: list[int], first: bool, again: Callable[[], Any]) -> None:
    index = batch_index(batch)
    if not isinstance(index, Tensor):
        got = f"keys {sorted(batch)}" if isinstance(batch, Mapping) else f"a {type(batch).__name__}"
        raise ValueError(
            "cache_teacher_logits looks the teacher's logits up by each example's 'index', but the training batches "
            f"have none (got {got}); batches must be (inputs, labels, index) or a mapping with an 'index' entry: "
            "wrap the training dataset in lightning_distill.lightning.data.IndexedDataset, or set "
            "cache_teacher_logits: false"
        )
    # A 3-item sequence's third item is taken as the index whatever it holds: say so, or an (inputs, labels, weights)
    # batch gets a message about numbering examples it never meant to number.
    taken = "" if isinstance(batch, Mapping) else " (the third item of each 3-item training batch, taken as the index)"
    way_out = (
        "a 3-item batch's third item must be the index; put other extras in a mapping batch with 'labels' and "
        "'index' entries, or set cache_teacher_logits: false"
    )
    if not is_index(index):
        raise ValueError(
            f"cache_teacher_logits needs each training example's 'index' as a 1-D integer tensor, but 'index'{taken} "
            f"is a {index.dtype} tensor of shape {tuple(index.shape)}; {way_out}"
        )
    if index.tolist() != positions:
        raise ValueError(
            f"cache_teacher_logits needs each training example's 'index'{taken} to be its position in the training "
            f"set, but examples {positions[0]}..{positions[-1]} have index {index.tolist()[:8]}...; number the "
            f"examples 0..N-1 in dataset order (IndexedDataset does); {way_out}"
        )
    # Collating the same examples again must give the same inputs, or cached logits would belong to other inputs.
    if first and not _same(batch, again()):
        raise ValueError(
            "cache_teacher_logits needs the same inputs every epoch, but encoding the first training examples twice "
            "gave different batches (random augmentation?); set cache_teacher_logits: false"
        )


@dataclass
class Plan:
    """What this process caches: the training set, its collate function, its shard and the cache key."""

    dataset: Dataset
    collate: Callable[[list[Any]], Any]
    shard: Shard
    key: str

    def loader(self, batches: list[list[int]] | None = None) -> DataLoader:
        batches = self.shard.batches() if batches is None else batches
        return DataLoader(self.dataset, batch_sampler=batches, collate_fn=self.collate, num_workers=0)


def plan_cache(teacher: nn.Module, datamodule: Any, train_loader: Any, batch_size: int) -> Plan:
    """Check the training set can be cached, choose this process's shard and compute the key (on every process)."""
    if not isinstance(train_loader, DataLoader):
        raise ValueError(
            f"cache_teacher_logits needs one training DataLoader, got {type(train_loader).__name__}; set "
            "cache_teacher_logits: false"
        )
    _check_deterministic(datamodule, train_loader)
    dataset, collate = train_loader.dataset, train_loader.collate_fn
    if len(dataset) == 0:
        raise ValueError("cache_teacher_logits: the training set is empty")
    rank, world = rank_and_world()
    plan = Plan(dataset, collate, Shard(len(dataset), batch_size, rank, world), "")
    total, error = 0, None
    try:
        for i, (batch, positions) in enumerate(zip(plan.loader(), plan.shard.batches(), strict=True)):
            _check_batch(batch, positions, i == 0, lambda p=positions: collate([dataset[j] for j in p]))
            total += batch_digest(batch)
    except ValueError as e:
        error = str(e)
    raise_on_every_rank(error)
    fingerprint = getattr(datamodule, "fingerprint", None)
    inputs = sum(gather(total)) % 2**256
    parts = [
        model_digest(teacher),
        f"{len(dataset)}:{batch_size}:{inputs:x}",
        fingerprint() if callable(fingerprint) else "",
    ]
    plan.key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]
    return plan


# --- running the teacher --------------------------------------------------------------------------------------------


def _create(folder: Path | None, shard: Shard, classes: int, storage: StorageFormat) -> Part:
    """This process's part, its disk space checked first and then reserved (no SIGBUS on a full disk)."""
    rows = shard.stop - shard.start
    if folder is not None:
        needed = rows * storage.bytes_per_example(classes) + 4096  # .npy headers
        check_free_space(folder, needed, f"the teacher logits of examples {shard.start}..{shard.stop - 1}")
    return create_part(folder, shard.start, rows, classes, storage)


@torch.inference_mode()
def _run_teacher(
    teacher: nn.Module, plan: Plan, storage: StorageFormat, folder: Path | None, device: Any
) -> tuple[Part | None, int]:
    """The teacher's logits over this process's shard, encoded into a part (in ``folder`` or in memory).

    Returns the part (None for a process without examples) and the teacher's number of classes.
    """
    was_training = teacher.training
    teacher.eval()
    shard, part, error, classes = plan.shard, None, None, 0
    batches = shard.batches()
    # Sharded teachers (FSDP) run each forward as a collective call: every process runs the same number of them,
    # the ones with fewer blocks repeat the first block of the training set and drop its logits.
    extra = [list(range(min(shard.batch_size, shard.examples)))] * (shard.most_blocks - len(batches))
    try:
        for i, batch in enumerate(plan.loader(batches + extra)):
            inputs = to_device(teacher_inputs(batch), device)
            logits = logits_of(teacher, inputs).float().cpu()
            classes = logits.shape[-1]
            if i >= len(batches) or error is not None:
                continue
            try:
                storage.check_classes(classes)
                rows = storage.encode(logits)
                if part is None:
                    part = _create(folder, shard, classes, storage)
            except (ValueError, OSError) as e:
                error = str(e)
                continue
            first = batches[i][0] - shard.start
            for name, array in rows.items():
                part.arrays[name][first : first + len(array)] = array
    finally:
        teacher.train(was_training)
    raise_on_every_rank(error)
    if part is not None:
        close_part(part)
    return part, classes


def load_or_compute(
    teacher: nn.Module, plan: Plan, storage: StorageFormat, cache_dir: str | None, device: Any
) -> tuple[TeacherLogits, bool]:
    """The cached logits of ``plan.key``: read from ``cache_dir`` if there and sound, else computed (and written there,
    under the entry's lock; see :mod:`lightning_distill.core.teacher_cache._folder`).

    Returns the logits and whether they were read from ``cache_dir``.
    """
    if cache_dir is None:
        part, classes = _run_teacher(teacher, plan, storage, None, device)
        parts = [p for p in gather(part) if p is not None]
        return TeacherLogits(parts, storage, max(gather(classes))), False
    final = Path(cache_dir) / f"teacher_logits_{plan.key}_{storage.name}"

    def build(folder: Path) -> tuple[Part | None, int]:
        return _run_teacher(teacher, plan, storage, folder, device)

    return load_or_build(final, plan.key, storage, plan.shard.examples, build)
