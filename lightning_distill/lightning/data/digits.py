"""scikit-learn's bundled 8x8 digits as a LightningDataModule: real data that never needs a download."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from torch.utils.data import TensorDataset

from lightning_distill.lightning.data._split import check_fraction, check_positive, split_indices
from lightning_distill.lightning.data._tensor import TensorBenchmarkMixin


class DigitsDataModule(TensorBenchmarkMixin, pl.LightningDataModule):
    """The 1,797 8x8 handwritten digits of ``sklearn.datasets.load_digits``, flattened to 64 features in [0, 1].

    A fixed seed splits them into train, validation and test. Batches are ``(features, labels, index)``, ``index``
    being each example's position in its split.

    Args:
        batch_size: Examples per batch for every split.
        val_fraction: Fraction of all examples used for validation.
        test_fraction: Fraction of all examples used for testing.
        num_workers: DataLoader worker processes.
        seed: Seed of the split.
        return_index: Yield ``(inputs, labels, index)`` batches, ``index`` being each example's position in its split
            (what ``cache_teacher_logits`` needs; a ``DistillationModule`` that caches turns it on itself).
    """

    num_classes: int = 10
    in_features: int = 64
    id2label = {i: str(i) for i in range(10)}
    # No preprocessing for export: the inputs are scikit-learn's 64 pixel counts (0..16) divided by 16, not images.
    preprocessing = None

    def __init__(
        self,
        batch_size: int = 64,
        val_fraction: float = 0.15,
        test_fraction: float = 0.2,
        num_workers: int = 0,
        seed: int = 0,
        return_index: bool = False,
    ) -> None:
        super().__init__()
        check_positive("batch_size", batch_size)
        check_fraction("val_fraction", val_fraction)
        check_fraction("test_fraction", test_fraction)
        if val_fraction + test_fraction >= 1.0:
            raise ValueError(
                f"val_fraction + test_fraction must leave training data, got {val_fraction} + {test_fraction}"
            )
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.test_fraction = test_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.return_index = return_index
        self._splits: dict[str, TensorDataset] = {}

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        from sklearn.datasets import load_digits

        digits = load_digits()
        features = torch.tensor(digits.data, dtype=torch.float32) / 16.0
        labels = torch.tensor(digits.target, dtype=torch.long)
        rest_idx, test_idx = split_indices(len(labels), self.test_fraction, self.seed)
        train_pos, val_pos = split_indices(len(rest_idx), self.val_fraction / (1.0 - self.test_fraction), self.seed)
        for split, idx in (("train", rest_idx[train_pos]), ("val", rest_idx[val_pos]), ("test", test_idx)):
            self._splits[split] = TensorDataset(features[idx], labels[idx])

    def _dataset(self, split: str) -> TensorDataset:
        self.setup()
        return self._splits[split]
