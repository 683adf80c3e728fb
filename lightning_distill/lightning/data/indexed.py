"""Any ``Dataset`` whose examples also carry their position, so the teacher-logit cache can look them up."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.data import Dataset


class IndexedDataset(Dataset):
    """Wraps a map-style ``dataset`` so that each example also carries its position ``index`` in it.

    An example ``(inputs, labels)`` becomes ``(inputs, labels, index)``; a mapping example gets an ``index`` entry.
    The default collate function then gives batches ``(inputs, labels, index)`` or ``{..., "index": ...}``: the
    convention of :mod:`lightning_distill.core.batch`, which every module of this library reads, and which
    ``cache_teacher_logits`` needs. The index is the example's position in ``dataset``, so it is the same in every epoch
    whatever the sampler shuffles, and in every run over the same data.

    The teacher-logit cache key includes a hash of every input tensor the teacher sees (and of each ``index``), so
    changed data gives a new key without anything more from you. Examples must be the same each time they are read
    (no random augmentation); the cache checks the first batch and refuses otherwise.

    Args:
        dataset: A map-style dataset (``len`` and ``__getitem__``) whose examples are ``(inputs, labels)`` sequences
            or mappings with a ``labels`` entry.
    """

    def __init__(self, dataset: Dataset) -> None:
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise TypeError(
                f"IndexedDataset needs a map-style dataset (with __len__ and __getitem__), got {type(dataset).__name__}"
            )
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        example = self.dataset[index]
        position = torch.tensor(index, dtype=torch.long)
        if isinstance(example, Mapping):
            if "index" in example:
                raise ValueError(f"example {index} of {type(self.dataset).__name__} already has an 'index' entry")
            return {**example, "index": position}
        if isinstance(example, (tuple, list)) and len(example) == 2:
            return (*example, position)
        kind = f"a {len(example)}-item sequence" if isinstance(example, (tuple, list)) else type(example).__name__
        raise ValueError(
            f"IndexedDataset needs examples that are (inputs, labels) or a mapping with 'labels'; example {index} of "
            f"{type(self.dataset).__name__} is {kind}"
        )

    @property
    def deterministic(self) -> bool:
        """Whether the wrapped dataset's examples are the same each time they are read (what it says; else True)."""
        return getattr(self.dataset, "deterministic", True) is not False
