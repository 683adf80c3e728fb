"""Lightning callbacks: pruning on a schedule (and, later, quantization and export steps)."""

from lightning_distill.callbacks.magnitude_pruning import MagnitudePruning
from lightning_distill.callbacks.structured_pruning import StructuredPruning

__all__ = [
    "MagnitudePruning",
    "StructuredPruning",
]
