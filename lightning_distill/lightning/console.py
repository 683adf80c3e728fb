"""What the ``lightning-distill`` command prints: Lightning's tips and the deprecation warnings of libraries' internals
left out, and a user's mistake told in one message instead of a traceback.

Only the command's entry points set this up (:func:`lightning_distill.lightning.main.main` and the recipes'
``main_guard``); importing lightning-distill changes nothing, so a program that uses the library keeps every message it
would get. ``--debug`` on the command line, or ``LIGHTNING_DISTILL_DEBUG=1``, turns all of it off: tips, warnings and
full tracebacks come back. Python's own ``-W`` options and ``PYTHONWARNINGS`` keep their say over warnings.

What is left out, and why:

- Lightning's "💡 Tip" lines (litlogger, litmodels): advertisements, not about the run.
- ``DeprecationWarning`` and ``FutureWarning`` raised from inside Lightning, torch, torchmetrics, torchvision,
  transformers or jsonargparse: one library's use of another's old API, which the user cannot act on. A warning
  raised in the user's code, or in lightning-distill's, is shown as before.

What is kept: Lightning's device summary (``GPU available: True, used: False``), which says on which hardware the
run is about to go, the seed line, progress bars, and every other warning (such as a data loader with few workers).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import warnings
from argparse import ArgumentError
from collections.abc import Iterator
from contextlib import contextmanager

from lightning_distill.core.errors import UserError
from lightning_distill.lightning._argument_errors import condense_argument_error

__all__ = ["DEBUG_ENV", "DEBUG_FLAG", "debug_enabled", "quiet_console", "take_debug_flag", "user_errors_in_brief"]

DEBUG_ENV = "LIGHTNING_DISTILL_DEBUG"
DEBUG_FLAG = "--debug"
EXIT_USER_ERROR = 2  # as argparse exits on a usage error
MAX_MESSAGE_LINES = 3

# rank_zero_info writes to lightning_utilities' logger, which Lightning points at the last of these it imported.
_RANK_ZERO_LOGGERS = (
    "lightning.pytorch.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
    "lightning_utilities.core.rank_zero",
)
_LIBRARIES = (
    "lightning",
    "lightning_fabric",
    "lightning_utilities",
    "pytorch_lightning",
    "torch",
    "torchmetrics",
    "torchvision",
    "transformers",
    "jsonargparse",
)
# A warning's module is the one it is attributed to (its stacklevel); lightning_distill is no match.
_LIBRARY_MODULES = rf"({'|'.join(_LIBRARIES)})(\..*)?\Z"
_TIP = re.compile(r"\W*Tip:")


class _HideTips(logging.Filter):
    """Drops Lightning's "💡 Tip: ..." records."""

    def filter(self, record: logging.LogRecord) -> bool:
        return _TIP.match(str(record.msg)) is None


def debug_enabled() -> bool:
    """Whether ``LIGHTNING_DISTILL_DEBUG`` (``1``, ``true``, ``yes``) asks for tips, warnings and tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def take_debug_flag(argv: list[str]) -> list[str]:
    """``argv`` without ``--debug``; where it was there, ``LIGHTNING_DISTILL_DEBUG=1`` is set instead, so processes
    the command starts (DDP workers) debug too.
    """
    if DEBUG_FLAG not in argv:
        return argv
    os.environ[DEBUG_ENV] = "1"
    return [arg for arg in argv if arg != DEBUG_FLAG]


def quiet_console() -> None:
    """Leave out Lightning's tips and libraries' internal deprecation warnings (see the module docstring).

    Call it again after importing Lightning: Lightning puts a filter of its own in front of the others on import.
    Does nothing in debug mode; leaves warnings alone where ``-W`` or ``PYTHONWARNINGS`` set filters.
    """
    if debug_enabled():
        return
    for name in _RANK_ZERO_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _HideTips) for existing in logger.filters):
            logger.addFilter(_HideTips())
    if sys.warnoptions:
        return
    for category in (DeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=_LIBRARY_MODULES)


def user_error_message(error: BaseException) -> str | None:
    """The message a user error is told with, or None for an exception that is a bug (it keeps its traceback).

    User errors: the parser's (an unknown option or class, a value of the wrong type, a config file that is
    not there), :class:`~lightning_distill.core.errors.UserError` (a missing download or extra, an unsafe checkpoint,
    a value a class of the config refused when it was built), a file or folder that is not there or not of the expected
    kind, and Lightning's ``MisconfigurationException`` (e.g. ``accelerator: gpu`` on a machine without one).
    """
    if isinstance(error, ArgumentError):
        return condense_argument_error(str(error))
    if isinstance(error, UserError | FileNotFoundError | IsADirectoryError | NotADirectoryError):
        return str(error)
    if "lightning" in sys.modules:
        from lightning.fabric.utilities.exceptions import MisconfigurationException

        if isinstance(error, MisconfigurationException):
            return str(error)
    return None


@contextmanager
def user_errors_in_brief(command: str) -> Iterator[None]:
    """Print a user error raised inside as ``COMMAND: error: MESSAGE`` (a parser error) or ``COMMAND: ErrorType:
    MESSAGE`` and a hint line, and exit with code 2.

    Other exceptions, and every exception in debug mode, propagate with their traceback.

    Args:
        command: The command as the user typed it, e.g. ``lightning-distill fit``.
    """
    try:
        yield
    except Exception as error:
        message = None if debug_enabled() else user_error_message(error)
        if message is None:
            raise
        kind = "error" if isinstance(error, ArgumentError) else type(error).__name__
        print(_brief(f"{command}: {kind}", message, command), file=sys.stderr)
        sys.exit(EXIT_USER_ERROR)


def _brief(prefix: str, message: str, command: str) -> str:
    lines = [line.rstrip() for line in message.strip().splitlines() if line.strip()] or ["(no message)"]
    if len(lines) > MAX_MESSAGE_LINES:
        lines = [*lines[: MAX_MESSAGE_LINES - 1], f"{lines[MAX_MESSAGE_LINES - 1]} [...]"]
    hint = f"({command} --help lists the options; {DEBUG_FLAG} or {DEBUG_ENV}=1 shows the traceback)"
    return "\n".join([f"{prefix}: {lines[0]}", *lines[1:], hint])
