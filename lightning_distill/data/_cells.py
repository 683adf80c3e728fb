"""Finding the rows of a text data set that cannot be used: an empty text or a missing label."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def is_empty_text(value: Any) -> bool:
    """True for a missing text (an empty CSV cell reads as None) or one of whitespace only."""
    return value is None or not str(value).strip()


def is_missing_label(value: Any) -> bool:
    """True for a missing label: None (an empty string cell) or NaN (an empty cell of a numeric column)."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def show_rows(rows: Sequence[int], first: int = 5) -> str:
    """``[3, 17, 20]``, or the first rows and how many more."""
    shown = str(list(rows[:first]))
    return shown if len(rows) <= first else f"{shown[:-1]}, ... ({len(rows) - first} more)]"


def empty_cells(texts: Sequence[Any], labels: Sequence[Any]) -> tuple[list[int], list[int]]:
    """The rows with an empty text and the rows with a missing label."""
    return (
        [row for row, text in enumerate(texts) if is_empty_text(text)],
        [row for row, label in enumerate(labels) if is_missing_label(label)],
    )


def describe_empty_cells(
    split: str, size: int, empty_text: Sequence[int], no_label: Sequence[int], text_column: str, label_column: str
) -> list[str]:
    """One line per problem of ``split``: which column, how many of its ``size`` rows, and which rows."""
    lines = []
    if empty_text:
        lines.append(
            f"split {split!r}: text_column {text_column!r} is empty in {len(empty_text)} of {size} rows: "
            f"rows {show_rows(empty_text)}"
        )
    if no_label:
        lines.append(
            f"split {split!r}: label_column {label_column!r} is missing in {len(no_label)} of {size} rows: "
            f"rows {show_rows(no_label)}"
        )
    return lines
