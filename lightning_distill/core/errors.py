"""Errors that mean "what you gave is wrong", not "the code is wrong".

The ``lightning-distill`` command prints a :class:`UserError` as its message alone, without a traceback (``--debug``
shows it); any other exception is a bug and keeps its traceback. Each subclass also derives from the built-in error a
caller would catch for it, so ``except ValueError`` (or ``RuntimeError``, ``ImportError``) keeps working.
"""

from __future__ import annotations

__all__ = ["ConfigValueError", "DownloadError", "MissingExtraError", "UserError"]


class UserError(Exception):
    """A problem with the user's input (a path, an option's value, a missing download or extra); the message says
    what was wrong and what to do.
    """


class ConfigValueError(UserError, ValueError):
    """A value of the config is wrong: a class refused it when it was built (``batch_size: 0``), or a file it names
    is empty or unreadable."""


class DownloadError(UserError, RuntimeError):
    """Data or a model could not be downloaded (offline, or the source is gone); the message names a local way."""


class MissingExtraError(UserError, ImportError):
    """An optional package is not installed; the message names the extra that installs it."""
