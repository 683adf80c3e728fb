"""MNIST: teacher, TinyMNIST from scratch and distilled, 70% magnitude pruning, int8 and ONNX variants, report.

The recipe lives in :mod:`lightning_distill.recipes.mnist`;
run from the project root: ``python recipes/mnist.py --help``.
"""

from lightning_distill.recipes.engine import main_guard
from lightning_distill.recipes.mnist import main

if __name__ == "__main__":
    main_guard(main)
