from pathlib import Path

import pytest
import torch
from conftest import MNIST10K

from lightning_distill.lightning.data import DigitsDataModule, MNISTDataModule


def test_mnist_from_local_copy() -> None:
    data = MNISTDataModule(root=str(MNIST10K), download=False, batch_size=32, val_fraction=0.1)
    data.setup("fit")
    data.setup("test")
    images, labels = next(iter(data.train_dataloader()))  # (inputs, labels): what a user's training_step unpacks
    assert images.shape == (32, 1, 28, 28) and labels.dtype == torch.long
    data.return_index = True  # what cache_teacher_logits needs; DistillationModule turns it on itself
    images, labels, index = next(iter(data.train_dataloader()))
    assert index.shape == (32,) and torch.equal(images, data._dataset("train").tensors[0][index])
    assert len(data._dataset("train")) == 7200 and len(data._dataset("val")) == 800
    inputs, test_labels = data.benchmark_data("test")
    assert inputs.shape == (2000, 1, 28, 28) and set(test_labels.tolist()) == set(range(10))
    # normalized with the MNIST statistics
    assert abs(float(inputs.mean())) < 0.2 and 0.8 < float(inputs.std()) < 1.2


def test_mnist_missing_offline_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"missing .*train-images-idx3-ubyte.*--data.root"):
        MNISTDataModule(root=str(tmp_path), download=False)


def test_mnist_download_failure_names_expected_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(torchvision.datasets, "MNIST", offline)
    data = MNISTDataModule(root=str(tmp_path), download=True)
    with pytest.raises(RuntimeError, match=r"could not download MNIST.*t10k-labels-idx1-ubyte.*mnist10k"):
        data.prepare_data()


def test_digits_split_is_deterministic_and_disjoint() -> None:
    a, b = DigitsDataModule(seed=3), DigitsDataModule(seed=3)
    a.setup()
    b.setup()
    sizes = {split: len(a._dataset(split)) for split in ("train", "val", "test")}
    assert sum(sizes.values()) == 1797 and sizes["test"] == 359
    torch.testing.assert_close(a._dataset("test").tensors[0], b._dataset("test").tensors[0])
    rows = {tuple(x.tolist()) for x in a._dataset("train").tensors[0]}
    overlap = sum(tuple(x.tolist()) in rows for x in a._dataset("test").tensors[0])
    assert overlap < 10  # the digits set has a few duplicate images, never a shared index


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"val_fraction": 0.0}, "val_fraction"), ({"batch_size": 0}, "batch_size")]
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DigitsDataModule(**kwargs)
