"""Deterministic train/validation splits and the argument checks shared by the data modules."""

from __future__ import annotations

import torch


def check_fraction(name: str, value: float) -> None:
    """Refuse a split fraction outside (0, 1), naming the argument."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def check_positive(name: str, value: int) -> None:
    """Refuse a batch size (or other count) below 1, naming the argument."""
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut off the last ``val_fraction`` of it as validation indices."""
    check_fraction("val_fraction", val_fraction)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * val_fraction))
    return order[:-n_val], order[-n_val:]
