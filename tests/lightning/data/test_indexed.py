"""IndexedDataset and the tensor data modules' ``(inputs, labels, index)`` batches, which the teacher cache reads."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, TensorDataset

from lightning_distill.core.teacher_cache import plan_cache
from lightning_distill.lightning.data import DigitsDataModule, IndexedDataset


class _Dicts(Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": torch.full((3,), i), "labels": torch.tensor(i % 2)}


def test_examples_get_their_position() -> None:
    pairs = IndexedDataset(TensorDataset(torch.arange(10.0).reshape(5, 2), torch.arange(5)))
    _inputs, labels, index = next(iter(DataLoader(pairs, batch_size=5)))
    assert index.tolist() == [0, 1, 2, 3, 4] and labels.tolist() == [0, 1, 2, 3, 4]
    batch = next(iter(DataLoader(IndexedDataset(_Dicts()), batch_size=2)))
    assert sorted(batch) == ["index", "input_ids", "labels"] and batch["index"].tolist() == [0, 1]


def test_examples_it_cannot_index_are_refused() -> None:
    triples = IndexedDataset(TensorDataset(torch.zeros(2, 1), torch.zeros(2), torch.zeros(2)))
    with pytest.raises(ValueError, match=r"\(inputs, labels\) or a mapping.*3-item sequence"):
        triples[0]
    with pytest.raises(TypeError, match=r"map-style dataset.*_Stream"):

        class _Stream(IterableDataset):
            def __iter__(self):
                yield from ()

        IndexedDataset(_Stream())


def test_digits_batches_carry_each_examples_position_in_every_shuffled_epoch() -> None:
    data = DigitsDataModule(batch_size=100, seed=1, return_index=True)
    data.setup()
    features = data._dataset("train").tensors[0]
    epochs = []
    for _ in range(2):
        seen = []
        for inputs, _labels, index in data.train_dataloader():
            assert torch.equal(inputs, features[index])  # the index says which example it is
            seen += index.tolist()
        assert sorted(seen) == list(range(len(features)))
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # shuffled differently, indexed the same


def test_the_cache_key_changes_when_a_users_data_changes() -> None:
    teacher = nn.Linear(4, 3)
    x, y = torch.rand(10, 4), torch.randint(0, 3, (10,))

    def key(inputs: torch.Tensor) -> str:
        loader = DataLoader(IndexedDataset(TensorDataset(inputs, y)), batch_size=4, shuffle=True)
        return plan_cache(teacher, None, loader, 4).key

    changed = x.clone()
    changed[9, 3] += 0.5
    assert key(x) == key(x.clone()) and key(x) != key(changed)
