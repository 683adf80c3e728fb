"""Distillation losses: pure functions plus thin ``nn.Module`` wrappers."""

from lightning_distill.losses.features import AttentionLoss, HiddenStateLoss, attention_map_loss, hidden_state_loss
from lightning_distill.losses.kd import KDLoss, KDLossOutput, agreement, distillation_loss, kd_loss

__all__ = [
    "AttentionLoss",
    "HiddenStateLoss",
    "KDLoss",
    "KDLossOutput",
    "agreement",
    "attention_map_loss",
    "distillation_loss",
    "hidden_state_loss",
    "kd_loss",
]
