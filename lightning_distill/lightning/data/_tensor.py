"""What the benchmark asks of a data module, for data modules that hold their splits as tensors."""

from __future__ import annotations

from typing import Any

from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.lightning.data.indexed import IndexedDataset


class TensorBenchmarkMixin:
    """Loaders, ``benchmark_data`` and ``encode`` for data modules whose ``_dataset(split)`` is a ``TensorDataset``.

    Loaders yield ``(inputs, labels)`` batches, or ``(inputs, labels, index)`` with ``return_index`` (through
    :class:`IndexedDataset`: ``index`` is each example's position in its split), which ``cache_teacher_logits`` needs;
    a ``DistillationModule`` that caches turns ``return_index`` on itself before the loaders are built.

    The benchmark measures a deployed model on *raw* inputs (here: tensors; for text: strings), so the cost of
    turning a raw input into model inputs (``encode``) is part of every latency figure.
    """

    def _dataset(self, split: str) -> TensorDataset:  # pragma: no cover - provided by the data module
        raise NotImplementedError

    batch_size: int
    num_workers: int
    return_index: bool = False
    # What an export folder needs (``lightning-distill export``): label names by class id, and how an image becomes a
    # model input in Hugging Face image-processor keys (``preprocessor_config.json``); None where there is no image.
    id2label: dict[int, str] | None = None
    preprocessing: dict[str, Any] | None = None

    def _loader(self, split: str, shuffle: bool = False) -> DataLoader:
        dataset = IndexedDataset(self._dataset(split)) if self.return_index else self._dataset(split)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test")

    def benchmark_data(self, split: str = "test") -> tuple[Tensor, Tensor]:
        """All raw inputs and labels of ``split``."""
        inputs, labels = self._dataset(split).tensors
        return inputs, labels

    def encode(self, raw: Any) -> Tensor:
        """Model inputs for raw inputs: the identity for tensors."""
        return raw

    def example_input(self, n: int = 1) -> Tensor:
        """The first ``n`` test inputs, ready for the model (for export and latency measurement)."""
        return self.encode(self.benchmark_data("test")[0][:n])
