"""Reading PyTorch files without unpickling code: every ``torch.load`` of this package goes through :func:`load_file`.

A full unpickling ``torch.load`` runs whatever a pickled file asks for (a checkpoint can carry an ``os.system``
call). Lightning checkpoints, plain ``state_dict`` files and every artifact this package writes hold tensors,
numbers, strings, lists and dicts only, which ``weights_only=True`` reads; a file that holds anything else is refused
with the name of the object it wanted to build, never unpickled.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

__all__ = ["UnsafeFileError", "load_file"]


class UnsafeFileError(ValueError):
    """A file asked to unpickle an object other than tensors and plain containers; it was not loaded."""


def load_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that name the file and the cause.

    Args:
        path: The file to read.
        what: How the error messages name the file (the option the user set, e.g. ``"teacher_checkpoint"``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UnsafeFileError: the file holds pickled objects besides tensors (it may run code); nothing of it was run.
        ValueError: the file is empty, truncated or not a PyTorch file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {str(path)!r} is empty (0 bytes): was it written completely? Save it again")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = re.search(r"unsupported GLOBAL ([A-Za-z_][\w.]*)\b", str(error))
        if refused is None:
            raise _unreadable(path, what, error) from None
        raise UnsafeFileError(
            f"{what} {str(path)!r} asks to unpickle {refused.group(1)}, which is not a tensor or a plain container. "
            "lightning-distill loads files with torch.load(weights_only=True) and never unpickles other objects, "
            "because unpickling can run arbitrary code. If you trust the file, load it yourself and save its tensors "
            "alone: torch.save(checkpoint['state_dict'], 'weights.pt')"
        ) from None
    except Exception as error:  # random bytes make the unpickler raise IndexError, KeyError, ...
        raise _unreadable(path, what, error) from None


def _unreadable(path: Path, what: str, error: BaseException) -> ValueError:
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return ValueError(
        f"{what} {str(path)!r} is not a readable PyTorch file ({path.stat().st_size} bytes; torch says: "
        f"{first_line[:200]}); it is truncated, corrupted or of another format. Write it again with torch.save or "
        "point to another file"
    )
