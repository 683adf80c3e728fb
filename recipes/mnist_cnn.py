"""MNIST with CNNs: resnet18 teacher -> SmallCNN distilled (logits + a feature map) -> channel-pruned -> int8 -> report.

The recipe lives in :mod:`lightning_distill.recipes.mnist_cnn`;
run from the project root: ``python recipes/mnist_cnn.py --help``.
"""

from lightning_distill.recipes.engine import main_guard
from lightning_distill.recipes.mnist_cnn import main

if __name__ == "__main__":
    main_guard(main)
