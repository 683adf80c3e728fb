"""MNIST as a LightningDataModule, held in memory as normalized tensors."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import TensorDataset

from lightning_distill.core.errors import DownloadError
from lightning_distill.lightning.data._split import check_fraction, check_positive, split_indices
from lightning_distill.lightning.data._tensor import TensorBenchmarkMixin

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
_RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class MNISTDataModule(TensorBenchmarkMixin, pl.LightningDataModule):
    """MNIST digits through ``torchvision.datasets.MNIST``.

    The images are decoded once into a normalized float tensor of shape ``(N, 1, 28, 28)``; batches are
    ``(images, labels, index)``, ``index`` being each example's position in its split. The validation split is cut
    from the training files with a fixed seed; the test split is the ``t10k`` files.

    Args:
        root: Folder that holds (or will hold) ``MNIST/raw``. Offline, point it at a local copy, e.g.
            ``../shared/data/mnist10k``.
        download: Download the files into ``root`` if they are missing.
        batch_size: Examples per batch for every split.
        val_fraction: Fraction of the training files held out for validation.
        num_workers: DataLoader worker processes.
        seed: Seed of the train/validation split.
        return_index: Yield ``(inputs, labels, index)`` batches, ``index`` being each example's position in its split
            (what ``cache_teacher_logits`` needs; a ``DistillationModule`` that caches turns it on itself).
    """

    num_classes: int = 10
    in_features: int = 28 * 28
    id2label = {i: str(i) for i in range(10)}
    # How a 28x28 grayscale image becomes the model input this module yields: what an export folder records.
    preprocessing = {
        "image_mode": "L",
        "size": {"height": 28, "width": 28},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [MNIST_MEAN],
        "image_std": [MNIST_STD],
    }

    def __init__(
        self,
        root: str = "data",
        download: bool = True,
        batch_size: int = 128,
        val_fraction: float = 0.1,
        num_workers: int = 0,
        seed: int = 0,
        return_index: bool = False,
    ) -> None:
        super().__init__()
        check_positive("batch_size", batch_size)
        check_fraction("val_fraction", val_fraction)
        self.root = root
        self.download = download
        self.batch_size = batch_size
        self.val_fraction = val_fraction
        self.num_workers = num_workers
        self.seed = seed
        self.return_index = return_index
        if not download:
            self._check_files()
        self._splits: dict[str, TensorDataset] = {}

    def _missing_files(self) -> list[Path]:
        raw = Path(self.root) / "MNIST" / "raw"
        return [raw / name for name in _RAW_FILES if not (raw / name).exists() and not (raw / f"{name}.gz").exists()]

    def _check_files(self) -> None:
        missing = self._missing_files()
        if missing:
            raise FileNotFoundError(
                f"MNIST is not under root={self.root!r} and download is off: missing "
                f"{', '.join(str(p) for p in missing)}. Point --data.root at a folder that holds MNIST/raw "
                "(offline: --data.root ../shared/data/mnist10k) or pass --data.download true when online."
            )

    def prepare_data(self) -> None:
        from torchvision.datasets import MNIST

        if not self.download or not self._missing_files():
            return
        try:
            for train in (True, False):
                MNIST(self.root, train=train, download=True)
        except Exception as error:  # torchvision raises RuntimeError/URLError variants when offline
            raise DownloadError(
                f"could not download MNIST into root={self.root!r} ({_short(error)}). Expected the files "
                f"{', '.join(_RAW_FILES)} under {Path(self.root) / 'MNIST' / 'raw'}; offline, point --data.root at a "
                "local copy such as ../shared/data/mnist10k and pass --data.download false."
            ) from error

    def _load(self, train: bool) -> TensorDataset:
        from torchvision.datasets import MNIST

        self._check_files()
        dataset = MNIST(self.root, train=train, download=False)
        images = (dataset.data.float().div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)).unsqueeze(1)
        return TensorDataset(images, dataset.targets.long())

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and "train" not in self._splits:
            full = self._load(train=True)
            train_idx, val_idx = split_indices(len(full), self.val_fraction, self.seed)
            images, labels = full.tensors
            self._splits["train"] = TensorDataset(images[train_idx], labels[train_idx])
            self._splits["val"] = TensorDataset(images[val_idx], labels[val_idx])
        if stage in (None, "test", "predict") and "test" not in self._splits:
            self._splits["test"] = self._load(train=False)

    def _dataset(self, split: str) -> TensorDataset:
        if split not in self._splits:
            self.setup("fit" if split in ("train", "val") else "test")
        return self._splits[split]


def _short(error: BaseException) -> str:
    """torchvision's download error on one line: what it downloaded and the last mirror's answer."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if len(lines) <= 1:
        return lines[0] if lines else type(error).__name__
    return f"{lines[0].rstrip(':')}: {lines[-1]}"
