"""Reading PyTorch files without unpickling code: every ``torch.load`` of this package goes through :func:`load_file`.

A full unpickling ``torch.load`` runs whatever a pickled file asks for (a checkpoint can carry an ``os.system``
call). Lightning checkpoints, plain ``state_dict`` files and every artifact this package writes hold tensors,
numbers, strings, lists and dicts only, which ``weights_only=True`` reads; a file that holds anything else is refused
with the name of the object it wanted to build, never unpickled.

Torch words its refusal in several ways (``Trying to load unsupported GLOBAL posix.system whose module posix is
blocked``, ``Unsupported global: GLOBAL subprocess.call was not an allowed global by default``, with ``builtins.``
left off: ``GLOBAL exec``, ...). The refused names are therefore read from the file itself, by disassembling its
pickle without running it (``torch.serialization.get_unsafe_globals_in_checkpoint``); the message is read only where
that cannot be done (a file in torch's legacy format), in each of its wordings.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from lightning_distill.core.errors import UserError

__all__ = ["UnsafeFileError", "load_file", "refused_globals"]

# Every wording of a weights-only refusal that names what was refused (torch 2.9 to 2.14); the GLOBAL ones first.
_GLOBAL_REFUSALS = (
    re.compile(r"unsupported GLOBAL (?P<name>[^\s`'\"]+) whose module", re.IGNORECASE),
    re.compile(r"Unsupported global: GLOBAL (?P<name>[^\s`'\"]+)", re.IGNORECASE),
    re.compile(r"\bGLOBAL (?P<name>[A-Za-z_][\w.]*)"),  # upper case: the opcode, not "allowed global by default"
)
_OTHER_REFUSALS = (
    re.compile(
        r"reduce for unrecognized function <(?:built-in )?(?:function|method) (?P<name>[\w.]+)[^>]*>"
        r"(?: which belongs to <module '(?P<module>[\w.]+)')?",
        re.IGNORECASE,
    ),
    re.compile(r"create new object for .* but got <class '(?P<name>[^']+)'>", re.IGNORECASE),
    re.compile(r"``(?P<name>torch\.[\w.]+)`` (?:and ``[\w.]+`` )?must be imported", re.IGNORECASE),
)


class UnsafeFileError(UserError, ValueError):
    """A file asked to unpickle an object other than tensors and plain containers; it was not loaded.

    Attributes:
        refused: The full names of the objects (``module.name``) the file asked for.
    """

    def __init__(self, message: str, refused: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.refused = refused


def refused_globals(message: str) -> tuple[str, ...]:
    """The names a weights-only ``torch.load`` refused, read from its error ``message`` in any of torch's wordings.

    Torch drops ``builtins.`` from the names of its GLOBAL refusals (``GLOBAL exec``); it is put back, so those names
    are ``module.name``. Returns an empty tuple where the message names no object (a corrupted file).
    """
    for pattern in _GLOBAL_REFUSALS:
        names = [match["name"].rstrip(".,;:") for match in pattern.finditer(message)]
        if names:
            return tuple(dict.fromkeys(name if "." in name else f"builtins.{name}" for name in names))
    for pattern in _OTHER_REFUSALS:
        match = pattern.search(message)
        if match:
            module = match.groupdict().get("module")
            return (f"{module}.{match['name']}" if module else match["name"],)
    return ()


def _refused_in_file(path: Path, error: BaseException) -> tuple[str, ...]:
    """The objects ``path`` asks for that weights-only loading refuses: from its pickle, else from torch's message."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a legacy-format or corrupted file: its pickle cannot be read apart from the message
        found = []
    return tuple(sorted(found)) or refused_globals(str(error))


def load_file(path: str | Path, what: str = "checkpoint") -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` with errors that name the file and the cause.

    Args:
        path: The file to read.
        what: How the error messages name the file (the option the user set, e.g. ``"teacher_checkpoint"``).

    Raises:
        FileNotFoundError: ``path`` is not a file.
        UnsafeFileError: the file holds pickled objects besides tensors (it may run code); nothing of it was run.
            Its ``refused`` attribute lists the objects by name.
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
        refused = _refused_in_file(path, error)
        if not refused:
            raise _unreadable(path, what, error) from None
        raise UnsafeFileError(
            f"{what} {str(path)!r} asks to unpickle {', '.join(refused)}, which "
            f"{'is' if len(refused) == 1 else 'are'} not tensors or plain containers. lightning-distill loads files "
            "with torch.load(weights_only=True) and never unpickles other objects, because unpickling can run "
            "arbitrary code. If you trust the file, load it yourself and save its tensors alone: "
            "torch.save(checkpoint['state_dict'], 'weights.pt')",
            refused,
        ) from None
    except Exception as error:  # random bytes make the unpickler raise IndexError, KeyError, ...
        raise _unreadable(path, what, error) from None


def _unreadable(path: Path, what: str, error: BaseException) -> ValueError:
    text = str(error).split("WeightsUnpickler error:")[-1].strip()  # torch's own cause, not its generic advice
    first_line = text.splitlines()[0] if text else type(error).__name__
    return ValueError(
        f"{what} {str(path)!r} is not a readable PyTorch file ({path.stat().st_size} bytes; torch says: "
        f"{first_line[:200]}); it is truncated, corrupted or of another format. Write it again with torch.save or "
        "point to another file"
    )
