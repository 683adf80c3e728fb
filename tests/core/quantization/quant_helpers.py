"""Models and data of the quantization and export tests: a small MLP trained briefly on real MNIST digits, and a tiny
random BERT.

Test modules import the fixtures they use from here (no ``conftest.py`` in these folders: a second module named
``conftest`` would shadow ``tests/conftest.py`` for the other tests' ``from conftest import ...``). The expensive
values are cached per process, so every module that imports a fixture shares one trained model.

PYTEST_DONT_REWRITE: plain helpers, imported by the test modules before pytest registers them as plugins.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from lightning_distill.core.models import MLP
from lightning_distill.lightning.data import MNISTDataModule

MNIST10K = Path(__file__).resolve().parents[4] / "shared" / "data" / "mnist10k"
HIDDEN = [32, 16]
BERT_LABELS = ["travel", "weather", "music"]


def build_mlp() -> MLP:
    return MLP(num_classes=10, in_features=784, hidden_sizes=HIDDEN)


@pytest.fixture(scope="session")
def mnist() -> dict[str, Tensor]:
    """2,000 training, 256 validation and 500 test images of the offline MNIST copy."""
    return _mnist()


@cache
def _mnist() -> dict[str, Tensor]:
    data = MNISTDataModule(root=str(MNIST10K), download=False)
    data.setup("fit")
    data.setup("test")
    train_x, train_y = data._dataset("train").tensors
    val_x, val_y = data._dataset("val").tensors
    test_x, test_y = data._dataset("test").tensors
    return {
        "train_x": train_x[:2000],
        "train_y": train_y[:2000],
        "val_x": val_x[:256],
        "val_y": val_y[:256],
        "test_x": test_x[:500],
        "test_y": test_y[:500],
    }


@pytest.fixture(scope="session")
def trained_mlp() -> MLP:
    """784 -> 32 -> 16 -> 10, three passes of Adam over 2,000 images (about 90% test accuracy)."""
    return _trained_mlp()


@cache
def _trained_mlp() -> MLP:
    mnist = _mnist()
    torch.manual_seed(0)
    model = build_mlp()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x, y = mnist["train_x"], mnist["train_y"]
    for _ in range(3):
        for start in range(0, len(y), 64):
            loss = nn.functional.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()


@pytest.fixture(scope="session")
def calibration() -> list[tuple[Tensor, Tensor]]:
    """Validation batches as a data loader yields them: ``(images, labels)``."""
    x, y = _mnist()["val_x"], _mnist()["val_y"]
    return [(x[i : i + 64], y[i : i + 64]) for i in range(0, len(y), 64)]


def build_bert():
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2,
        hidden_size=32,
        num_attention_heads=4,
        intermediate_size=64,
        vocab_size=100,
        num_labels=len(BERT_LABELS),
        id2label=dict(enumerate(BERT_LABELS)),
        label2id={n: i for i, n in enumerate(BERT_LABELS)},
    )
    return BertForSequenceClassification(config).eval()


@pytest.fixture(scope="session")
def tiny_bert():
    return _tiny_bert()


@cache
def _tiny_bert():
    return build_bert()


@pytest.fixture(scope="session")
def bert_batches() -> list[dict[str, Tensor]]:
    """Tokenized-looking batches of different batch sizes and lengths, with padding, as a text loader yields them."""
    generator = torch.Generator().manual_seed(0)
    batches = []
    for size, length in [(4, 9), (1, 5), (3, 16), (8, 12)]:
        ids = torch.randint(5, 100, (size, length), generator=generator)
        mask = torch.ones_like(ids)
        mask[0, length - 2 :] = 0  # the first example is padded
        ids[mask == 0] = 0
        batches.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "token_type_ids": torch.zeros_like(ids),
                "labels": torch.randint(0, 3, (size,), generator=generator),
            }
        )
    return batches


def bert_logits(model: nn.Module, batch: dict[str, Tensor]) -> Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == y).float().mean())
