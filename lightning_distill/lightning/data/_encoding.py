"""Tokenized text: the tokenizer digest, tokenized splits read from Arrow, length-grouped batches, dynamic padding."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, Dataset, Sampler


def tokenizer_digest(tokenizer: Any) -> str:
    """A hash of everything that decides how a tokenizer encodes text (vocabulary, normalizer, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary and class
        text = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])
    return hashlib.sha256(text.encode()).hexdigest()


class ListColumn(Sequence):
    """A memory-mapped Arrow column of token-id lists, read without copying: item ``i`` is a numpy view.

    Each Arrow chunk is kept as its flat values and offsets (numpy views of the mapped file), so reading an example
    touches only its own bytes and the column costs no memory per example beyond the pages read.
    """

    def __init__(self, column: pa.ChunkedArray) -> None:
        self._chunks = [(chunk.values.to_numpy(), chunk.offsets.to_numpy()) for chunk in column.chunks if len(chunk)]
        self._starts = np.cumsum([0] + [len(offsets) - 1 for _, offsets in self._chunks])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} examples")
        index %= len(self)
        chunk = int(np.searchsorted(self._starts, index, side="right")) - 1
        values, offsets = self._chunks[chunk]
        row = index - int(self._starts[chunk])
        return values[offsets[row] : offsets[row + 1]]

    def lengths(self) -> np.ndarray:
        """The token count of every example, from the offsets alone."""
        parts = [np.diff(offsets) for _, offsets in self._chunks]
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, dtype=np.int64)


class IntColumn(Sequence):
    """Integers held in a numpy array, read as Python ints (a slice reads as a list)."""

    def __init__(self, values: np.ndarray) -> None:
        self.values = values

    def __len__(self) -> int:
        return len(self.values)

    def __getitem__(self, index: int | slice) -> Any:
        return self.values[index].tolist()


class TokenizedSplit(Dataset):
    """One tokenized split: each item is a dict of token-id sequences (unpadded) plus ``labels`` and ``index``.

    Built by :meth:`from_table` on the memory-mapped Arrow table of the token cache, or from any sequences.

    Args:
        columns: Entry name (``input_ids``, ``token_type_ids``, ``teacher_input_ids``, ...) -> one token-id sequence
            per example.
        labels: The class id of each example.
    """

    def __init__(self, columns: Mapping[str, Sequence[Sequence[int]]], labels: Sequence[int]) -> None:
        self.columns = dict(columns)
        self.labels = labels
        self.folder: str | None = None

    @classmethod
    def from_disk(cls, folder: str) -> TokenizedSplit:
        """The split saved (``save_to_disk``) in ``folder``, memory-mapped: a ``labels`` column and one column of
        token-id lists per entry."""
        from datasets import load_from_disk

        table = load_from_disk(folder, keep_in_memory=False).data.table
        labels = IntColumn(table.column("labels").to_numpy())
        split = cls({name: ListColumn(table.column(name)) for name in table.column_names if name != "labels"}, labels)
        split.folder = folder
        return split

    def __reduce_ex__(self, protocol: Any) -> Any:
        # DataLoader workers started by spawn map the same files instead of receiving a copy of every example
        if self.folder is not None:
            return type(self).from_disk, (self.folder,)
        return super().__reduce_ex__(protocol)

    def __len__(self) -> int:
        return len(self.labels)

    def lengths(self) -> np.ndarray:
        """The token count of every example's ``input_ids`` (read from the Arrow offsets where it can be)."""
        ids = self.columns["input_ids"]
        if isinstance(ids, ListColumn):
            return ids.lengths()
        return np.fromiter((len(row) for row in ids), dtype=np.int64, count=len(ids))

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.columns.items()}
        item["labels"] = self.labels[index]
        item["index"] = index
        return item


class LengthGroupedBatches(BatchSampler):
    """Shuffled batches of examples of similar length, so dynamic padding pads little.

    The examples come shuffled from ``sampler`` (a ``RandomSampler``, drawing from the global torch RNG, so
    ``seed_everything`` fixes the order; under DDP Lightning swaps in its ``DistributedSampler``, so each process
    groups its own share), are cut into groups of ``group_size`` batches, sorted by length inside each group, batched,
    and the batches shuffled again. The order is held in numpy arrays; each batch becomes a list only when it is read.

    Args:
        sampler: The shuffled example indices to batch (``RandomSampler(dataset)``).
        batch_size: Examples per batch.
        drop_last: Leave out the last, smaller batch of every group.
        lengths: Token count of each example of the data set (indexed by what ``sampler`` yields).
        group_size: Batches per sorted group; larger groups pad less but mix lengths less across an epoch.
    """

    def __init__(
        self,
        sampler: Sampler[int] | Sequence[int],
        batch_size: int,
        drop_last: bool = False,
        lengths: Sequence[int] | np.ndarray | None = None,
        group_size: int = 8,
    ) -> None:
        super().__init__(sampler, batch_size, drop_last)
        if lengths is None:
            raise ValueError("LengthGroupedBatches needs the lengths of the examples")
        if group_size < 1:
            raise ValueError(f"group_size must be >= 1, got {group_size}")
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.group_size = group_size

    def __len__(self) -> int:
        n, chunk = len(self.sampler), self.batch_size * self.group_size
        full, rest = divmod(n, chunk)
        if self.drop_last:
            return full * self.group_size + rest // self.batch_size
        return full * self.group_size + -(-rest // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        order = np.fromiter(iter(self.sampler), dtype=np.int64)
        chunk = self.batch_size * self.group_size
        starts, ends = [], []  # every batch's slice of ``order``, in group order
        for start in range(0, len(order), chunk):
            part = order[start : start + chunk]
            order[start : start + chunk] = part[np.argsort(self.lengths[part], kind="stable")]
            for offset in range(0, len(part), self.batch_size):
                stop = min(offset + self.batch_size, len(part))
                if stop - offset == self.batch_size or not self.drop_last:
                    starts.append(start + offset)
                    ends.append(start + stop)
        # Both permutations are drawn when the iterator is made, not at its first batch: the DataLoader draws its
        # base seed from the same RNG right after iter(sampler), and the order must not depend on that.
        shuffled = torch.randperm(len(starts)).tolist()
        return (order[starts[i] : ends[i]].tolist() for i in shuffled)


class PadCollator:
    """Pads token-id sequences to the longest example of the batch (dynamic padding) and stacks them into tensors.

    Args:
        pad_values: Padding value per entry (``input_ids`` -> the tokenizer's pad id); other entries pad with 0.
        left: Pad on the left (for tokenizers whose ``padding_side`` is ``"left"``).
        masks: Attention-mask entries to make from the lengths of other entries (``attention_mask`` ->
            ``input_ids``): 1 on every real token, 0 on padding. The token cache stores no masks, since an unpadded
            example's mask is all ones.
    """

    def __init__(self, pad_values: dict[str, int], left: bool = False, masks: dict[str, str] | None = None) -> None:
        self.pad_values = pad_values
        self.left = left
        self.masks = dict(masks or {})

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        batch: dict[str, Tensor] = {}
        lengths: dict[str, np.ndarray] = {}
        for key in examples[0]:
            values = [example[key] for example in examples]
            if not isinstance(values[0], (list, tuple, np.ndarray, Tensor)):
                batch[key] = torch.tensor(values, dtype=torch.long)
                continue
            lengths[key] = np.array([len(v) for v in values], dtype=np.int64)
            width = int(lengths[key].max())
            rows = np.full((len(values), width), self.pad_values.get(key, 0), dtype=np.int64)
            for row, (value, n) in enumerate(zip(values, lengths[key], strict=True)):
                if n and self.left:
                    rows[row, width - n :] = value
                elif n:
                    rows[row, :n] = value
            batch[key] = torch.from_numpy(rows)
        for mask, source in self.masks.items():
            if source in lengths and mask not in batch:
                width = batch[source].shape[1]
                positions = np.arange(width)[None, :]
                n = lengths[source][:, None]
                real = positions >= width - n if self.left else positions < n
                batch[mask] = torch.from_numpy(real.astype(np.int64))
        return batch
