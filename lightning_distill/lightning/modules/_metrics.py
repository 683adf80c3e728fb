"""Top-1 accuracy and teacher agreement as torchmetrics metrics, so epochs aggregate (and sync across processes) right.

Each metric is created at its first batch with the logits' width as the class count, so a model needs no
``num_classes`` attribute. torchmetrics keeps its states out of ``state_dict``: checkpoints are unchanged.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy


class TopOneMetrics(nn.Module):
    """Micro-averaged top-1 accuracy metrics by name (``val/acc``, ``train/agreement``, ...), made on first use."""

    def __init__(self) -> None:
        super().__init__()
        self.metrics = nn.ModuleDict()

    def update(self, name: str, logits: Tensor, targets: Tensor) -> tuple[MulticlassAccuracy, str]:
        """Update the metric ``name`` with a batch; return it and its attribute path under this module's owner."""
        key = name.replace("/", "_")
        if key not in self.metrics:
            self.metrics[key] = MulticlassAccuracy(num_classes=logits.shape[-1], average="micro").to(logits.device)
        metric = self.metrics[key]
        metric(logits.detach(), targets)
        return metric, f"metrics.{key}"


def log_top1(module: Any, name: str, logits: Tensor, targets: Tensor, batch_size: int, prog_bar: bool = False) -> None:
    """Log ``name`` as the top-1 accuracy of ``logits`` against ``targets`` (labels, or the teacher's classes).

    ``module`` is a LightningModule holding a :class:`TopOneMetrics` as ``top1``. The metric is named to Lightning
    explicitly: it was created after Lightning listed the module's metrics.
    """
    metric, path = module.top1.update(name, logits, targets)
    module.log(name, metric, prog_bar=prog_bar, batch_size=batch_size, metric_attribute=f"top1.{path}")
