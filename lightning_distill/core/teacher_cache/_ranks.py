"""The processes of one fit (DDP ranks, or just this one): who am I, what does everyone hold, wait for everyone."""

from __future__ import annotations

from typing import Any

import torch


def distributed() -> bool:
    """Whether this process is one of several of a ``torch.distributed`` group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the number of processes (0 and 1 outside a group)."""
    if distributed():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def gather(value: Any) -> list[Any]:
    """``value`` of every process, in rank order."""
    if not distributed():
        return [value]
    values: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values


def barrier() -> None:
    """Wait until every process of the group is here."""
    if distributed():
        torch.distributed.barrier()


def raise_on_every_rank(error: str | None) -> None:
    """Raise on every process where any process met an error, so none is left waiting at a collective call."""
    errors = gather(error)
    for rank, message in enumerate(errors):
        if message is not None:
            where = f" (on rank {rank} of {len(errors)})" if len(errors) > 1 else ""
            raise ValueError(message + where)
