"""Result records without the machine's absolute paths, so a JSON file kept in a repository reads the same anywhere.

A benchmark or recipe records its options and the artifacts it wrote, and those are often absolute paths
(``/home/me/project/runs/...``, ``/data/shared/...``). Kept as they are, they tie a result to one machine's folders
and leak its layout. :func:`relative_paths` rewrites every absolute path in a record, whether it is a whole string
(a dictionary key or value, a list item) or one word of a command line (``--teacher /x/y`` or ``--teacher=/x/y``), as
the path relative to a start folder: the project root for results kept under ``benchmarks/results/``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

__all__ = ["ABSOLUTE_PATH", "relative_paths"]

# A POSIX absolute path: a slash that does not continue a word, a number, a URL ("https://...") or another path,
# followed by at least one character of a file name.
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])/[\w.@+~-][\w.@+~/-]*")


def relative_paths(value: Any, start: str | Path) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, tuples, strings, numbers) with every absolute path made relative.

    Args:
        value: The record, e.g. a benchmark's settings and results.
        start: The folder the paths become relative to (``../shared/data`` for ``/work/shared/data`` when ``start``
            is ``/work/project``).

    Returns:
        The record with the same structure; strings without an absolute path, numbers and ``None`` are unchanged.
    """
    start = os.path.abspath(start)

    def convert(item: Any) -> Any:
        if isinstance(item, str):
            return ABSOLUTE_PATH.sub(lambda match: os.path.relpath(match.group(0), start), item)
        if isinstance(item, dict):
            return {convert(key): convert(entry) for key, entry in item.items()}
        if isinstance(item, (list, tuple)):
            return [convert(entry) for entry in item]
        return item

    return convert(value)
