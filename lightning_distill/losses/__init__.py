"""Distillation losses: pure functions plus thin ``nn.Module`` wrappers."""

from lightning_distill.losses.kd import KDLoss, KDLossOutput, agreement, distillation_loss, kd_loss

__all__ = ["KDLoss", "KDLossOutput", "agreement", "distillation_loss", "kd_loss"]
