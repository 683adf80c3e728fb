"""Finding the rows of a text data set that cannot be used: an empty text or a missing label."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _rows(column: pa.ChunkedArray, is_empty: Callable[[pa.Array], pa.Array]) -> np.ndarray:
    """The rows where ``is_empty`` holds, computed chunk by chunk so only one chunk's temporaries exist at a time."""
    rows, start = [], 0
    for chunk in column.chunks:
        mask = is_empty(chunk).to_numpy(zero_copy_only=False)
        rows.append(np.flatnonzero(np.asarray(mask, dtype=bool)) + start)
        start += len(chunk)
    return np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)


def _empty_text(chunk: pa.Array) -> pa.Array:
    return pc.fill_null(pc.or_kleene(pc.is_null(chunk), pc.equal(pc.utf8_trim_whitespace(chunk), "")), True)


def _missing_label(chunk: pa.Array) -> pa.Array:
    return pc.is_null(chunk, nan_is_null=pa.types.is_floating(chunk.type))


def empty_cells(texts: pa.ChunkedArray, labels: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """The rows with an empty text (missing, or whitespace only) and the rows with a missing label (null or NaN).

    Computed on the Arrow columns, so a split of millions of rows never becomes a Python list.
    """
    return _rows(texts, _empty_text), _rows(labels, _missing_label)


def show_rows(rows: Sequence[int], first: int = 5) -> str:
    """``[3, 17, 20]``, or the first rows and how many more."""
    shown = str([int(row) for row in rows[:first]])
    return shown if len(rows) <= first else f"{shown[:-1]}, ... ({len(rows) - first} more)]"


def describe_empty_cells(
    split: str, size: int, empty_text: Sequence[int], no_label: Sequence[int], text_column: str, label_column: str
) -> list[str]:
    """One line per problem of ``split``: which column, how many of its ``size`` rows, and which rows."""
    lines = []
    if len(empty_text):
        lines.append(
            f"split {split!r}: text_column {text_column!r} is empty in {len(empty_text)} of {size} rows: "
            f"rows {show_rows(empty_text)}"
        )
    if len(no_label):
        lines.append(
            f"split {split!r}: label_column {label_column!r} is missing in {len(no_label)} of {size} rows: "
            f"rows {show_rows(no_label)}"
        )
    return lines
