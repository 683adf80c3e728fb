"""Top-1 accuracy and teacher agreement as torchmetrics metrics, so epochs aggregate (and sync across processes) right.

Each metric is created at its first batch with the logits' width as the class count, so a model needs no
``num_classes`` attribute. torchmetrics keeps its states out of ``state_dict``: checkpoints are unchanged.
"""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy


class TopOneMetrics(nn.Module):
    """Micro-averaged top-1 accuracy metrics by name (``val/acc``, ``train/agreement``, ...), made on first use."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = nn.ModuleDict()

    def __call__(self, name: str, logits: Tensor, targets: Tensor) -> MulticlassAccuracy:  # type: ignore[override]
        """Update the metric ``name`` with a batch and return it (log the returned metric with ``self.log``)."""
        key = name.replace("/", "_")
        if key not in self.metrics:
            self.metrics[key] = MulticlassAccuracy(num_classes=logits.shape[-1], average="micro").to(logits.device)
        metric = self.metrics[key]
        metric(logits.detach(), targets)
        return metric
