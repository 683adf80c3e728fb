"""Tokenized text: the tokenizer digest, tokenized splits, length-grouped batches and dynamic padding."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler


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


class EncodedSplit(Dataset):
    """One tokenized split: each item is a dict of token-id lists plus ``labels`` and ``index``."""

    def __init__(self, columns: dict[str, list], labels: list[int]) -> None:
        self.columns = columns
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.columns.items()}
        item["labels"] = self.labels[index]
        item["index"] = index
        return item


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of examples of similar length, so dynamic padding pads little.

    The examples are shuffled (with the global torch RNG, so ``seed_everything`` fixes the order), cut into groups of
    ``group_size`` batches, sorted by length inside each group, batched, and the batches shuffled again.

    Args:
        lengths: Token count of each example.
        batch_size: Examples per batch.
        group_size: Batches per sorted group; larger groups pad less but mix lengths less across an epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, group_size: int = 50) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.group_size = group_size

    def __len__(self) -> int:
        return sum(-(-len(part) // self.batch_size) for part in self._parts(list(range(len(self.lengths)))))

    def _parts(self, order: list[int]) -> list[list[int]]:
        chunk = self.batch_size * self.group_size
        return [order[start : start + chunk] for start in range(0, len(order), chunk)]

    def __iter__(self):
        order = torch.randperm(len(self.lengths)).tolist()
        batches = []
        for part in self._parts(order):
            part.sort(key=lambda i: self.lengths[i])
            batches += [part[start : start + self.batch_size] for start in range(0, len(part), self.batch_size)]
        return iter([batches[i] for i in torch.randperm(len(batches)).tolist()])


class PadCollator:
    """Pads token-id lists to the longest example of the batch (dynamic padding) and stacks them into tensors.

    Args:
        pad_values: Padding value per entry (``input_ids`` -> the tokenizer's pad id); other entries pad with 0.
        left: Pad on the left (for tokenizers whose ``padding_side`` is ``"left"``).
    """

    def __init__(self, pad_values: dict[str, int], left: bool = False) -> None:
        self.pad_values = pad_values
        self.left = left

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        batch: dict[str, Tensor] = {}
        for key in examples[0]:
            values = [example[key] for example in examples]
            if not isinstance(values[0], list):
                batch[key] = torch.tensor(values, dtype=torch.long)
                continue
            length = max(len(v) for v in values)
            pad = self.pad_values.get(key, 0)
            if self.left:
                rows = [[pad] * (length - len(v)) + v for v in values]
            else:
                rows = [v + [pad] * (length - len(v)) for v in values]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        return batch
