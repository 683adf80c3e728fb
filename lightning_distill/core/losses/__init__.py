"""Distillation losses: pure functions plus thin ``nn.Module`` wrappers."""

from lightning_distill.core.losses.features import AttentionLoss, HiddenStateLoss, attention_map_loss, hidden_state_loss
from lightning_distill.core.losses.kd import KDLoss, KDLossOutput, agreement, distillation_loss, kd_loss
from lightning_distill.core.losses.named_features import FeatureLoss, feature_loss, pool_to_common_size

__all__ = [
    "AttentionLoss",
    "FeatureLoss",
    "HiddenStateLoss",
    "KDLoss",
    "KDLossOutput",
    "agreement",
    "attention_map_loss",
    "distillation_loss",
    "feature_loss",
    "hidden_state_loss",
    "kd_loss",
    "pool_to_common_size",
]
