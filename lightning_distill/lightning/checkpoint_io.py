"""``AtomicCheckpointIO``: Lightning checkpoints written whole or not at all, the default of ``DistillTrainer``.

Lightning's ``TorchCheckpointIO`` writes a local checkpoint through fsspec, whose transaction stages it in the system's
temporary folder and then copies it over the target when that folder is on another file system: a full disk leaves a
truncated ``best.ckpt`` that no later ``--ckpt_path`` can load. This one writes a local checkpoint with
:func:`~lightning_distill.core.atomic.write_torch` (a temporary beside it, flushed, then renamed), so a failed save
keeps the previous checkpoint loadable and says which file could not be written. Remote paths (``s3://...``) go to
Lightning's.
"""

from __future__ import annotations

from typing import Any

from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.plugins.io import CheckpointIO, TorchCheckpointIO
from lightning.pytorch.strategies import Strategy
from typing_extensions import override

from lightning_distill.core.atomic import write_torch

__all__ = ["AtomicCheckpointIO", "use_atomic_checkpoints"]


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose local saves are atomic; loading and removing are Lightning's."""

    @override
    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        """Save ``checkpoint`` to ``path`` through a temporary beside it (see the module docstring).

        Raises:
            TypeError: ``storage_options`` was given (as Lightning's ``TorchCheckpointIO`` does).
            lightning_distill.core.atomic.WriteError: the file could not be written (a full disk); the previous one
                is kept.
        """
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        write_torch(path, checkpoint)


def use_atomic_checkpoints(strategy: Strategy, plugins: Any) -> None:
    """Give ``strategy`` an :class:`AtomicCheckpointIO` where it would save with Lightning's ``TorchCheckpointIO``.

    A ``CheckpointIO`` the user passed in ``plugins`` is kept, and so is a strategy's own (XLA's, an asynchronous one).
    """
    given = plugins if isinstance(plugins, (list, tuple)) else [plugins]
    if any(isinstance(plugin, CheckpointIO) for plugin in given):
        return
    if type(strategy.checkpoint_io) is TorchCheckpointIO:
        strategy.checkpoint_io = AtomicCheckpointIO()
