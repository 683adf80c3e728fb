"""LightningDataModules. Each exposes ``num_classes`` (linked to the model by the CLI) and ``example_input()``."""

from lightning_distill.lightning.data.digits import DigitsDataModule
from lightning_distill.lightning.data.indexed import IndexedDataset
from lightning_distill.lightning.data.mnist import MNISTDataModule
from lightning_distill.lightning.data.text_classification import TextClassificationDataModule

__all__ = ["DigitsDataModule", "IndexedDataset", "MNISTDataModule", "TextClassificationDataModule"]
