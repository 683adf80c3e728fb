"""Which rows of which split of a loaded text data set the train, val and test roles read."""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import numpy as np
import pyarrow as pa

from lightning_distill.lightning.data._cells import describe_empty_cells, empty_cells, show_rows
from lightning_distill.lightning.data._split import parse_split, slice_range, stratified_split

log = logging.getLogger(__name__)


class SplitRows:
    """The rows each role reads, from split specs such as ``"train"``, ``"train[:90%]"`` or a fraction (val only).

    At construction every split a role names is checked: it exists, has the text and label columns, holds strings as
    text, and has no row with an empty text or a missing label. Such rows are an error that names the split, column,
    rows and count, or, with ``drop_empty``, are left out of every role and logged.

    Args:
        raw: The loaded ``DatasetDict``.
        source: What ``raw`` was loaded from, for messages.
        specs: Role (``train``, ``val``, ``test``) -> split name, slice, or (``val`` only) fraction of ``train``.
        text_column: Column of the texts.
        label_column: Column of the labels.
        drop_empty: Leave out rows with an empty text or a missing label instead of refusing them.
    """

    def __init__(
        self, raw: Any, source: str, specs: dict[str, Any], text_column: str, label_column: str, drop_empty: bool
    ) -> None:
        self.raw = raw
        self.specs = specs
        self.text_column = text_column
        self.label_column = label_column
        named = {role: spec if isinstance(spec, str) else specs["train"] for role, spec in specs.items()}
        self.sources = {role: parse_split(spec)[0] for role, spec in named.items()}
        for role, spec in specs.items():
            if isinstance(spec, str):
                self._check_split(role, spec, self.sources[role], source)
        self.dropped = self._find_empty(drop_empty)
        self.rows: dict[str, np.ndarray] = {}
        for role, spec in specs.items():
            if isinstance(spec, str):
                split, part = parse_split(spec)
                sliced = slice_range(len(raw[split]), part)
                rows = np.arange(sliced.start, sliced.stop, sliced.step, dtype=np.int64)
                self.rows[role] = rows[~np.isin(rows, self.dropped[split])] if split in self.dropped else rows

    def _check_split(self, role: str, spec: str, split: str, source: str) -> None:
        if split not in self.raw:
            named = f"{role}_split {spec!r}" + ("" if spec == split else f" (split {split!r})")
            hint = (
                "; without a validation split, val_split: 0.1 holds out a tenth of train_split" if role == "val" else ""
            )
            raise ValueError(f"{named} is not a split of {source}; its splits are {sorted(self.raw)}{hint}")
        columns = self.raw[split].column_names
        for what, column in (("text_column", self.text_column), ("label_column", self.label_column)):
            if column not in columns:
                raise ValueError(
                    f"{what} {column!r} is not a column of split {split!r} of {source}; its columns are {columns}"
                )
        feature = self.raw[split].features[self.text_column]
        if getattr(feature, "dtype", None) not in ("string", "large_string"):
            raise ValueError(f"text_column {self.text_column!r} of split {split!r} holds {feature}, not strings")

    def _find_empty(self, drop_empty: bool) -> dict[str, np.ndarray]:
        dropped, problems = {}, []
        self.labels_dropped = False
        for split in dict.fromkeys(self.sources.values()):
            texts, labels = self.column(split, self.text_column), self.column(split, self.label_column)
            empty_text, no_label = empty_cells(texts, labels)
            size = len(self.raw[split])
            lines = describe_empty_cells(split, size, empty_text, no_label, self.text_column, self.label_column)
            problems += lines
            if lines and drop_empty:
                dropped[split] = np.union1d(empty_text, no_label)
                self.labels_dropped |= bool(len(no_label))
                log.warning(
                    "drop_empty: left out %d of the %d rows of split %r (rows counted from 0): %s",
                    len(dropped[split]), size, split, "; ".join(lines),
                )  # fmt: skip
        if problems and not drop_empty:
            raise ValueError(
                "rows without a text or a label (rows counted from 0, a CSV header not counted):\n  "
                + "\n  ".join(problems)
                + "\nFill those cells or delete those rows in the data files, or pass drop_empty: true "
                "(--data.drop_empty true) to leave them out; the log then says how many per split."
            )
        return dropped

    def column(self, split: str, column: str) -> pa.ChunkedArray:
        """``column`` of ``split`` as an Arrow array (memory-mapped where the data set is)."""
        table = self.raw[split].with_format("arrow")[column]
        return table if isinstance(table, pa.ChunkedArray) else pa.chunked_array([table])

    def values(self, split: str, column: str, rows: np.ndarray) -> pa.ChunkedArray:
        """The values of ``column`` in the given ``rows`` of ``split``, as an Arrow array."""
        return self.column(split, column).take(pa.array(rows, type=pa.int64()))

    def kept(self, split: str) -> np.ndarray:
        """Every row of ``split`` but those ``drop_empty`` left out."""
        rows = np.arange(len(self.raw[split]), dtype=np.int64)
        return np.delete(rows, self.dropped[split]) if split in self.dropped else rows

    def hold_out(self, label_ids: np.ndarray, fraction: float, seed: int) -> None:
        """Move ``fraction`` of the training rows (labelled ``label_ids``) to ``val``: seeded, stratified by label."""
        train_rows = self.rows["train"]
        train, val, how = stratified_split(label_ids.tolist(), fraction, seed)
        train, val = np.asarray(train, dtype=np.int64), np.asarray(val, dtype=np.int64)
        self.rows["train"], self.rows["val"] = train_rows[train], train_rows[val]
        # a plain stratified cut is informational; a fallback or an exception to it is worth the user's attention
        log.log(
            logging.INFO if how == "stratified by label" else logging.WARNING,
            "val_split %s: %d of the %d rows of train_split %r are the validation split, %d stay for training "
            "(seed %d, %s)",
            fraction, len(val), len(train_rows), self.specs["train"], len(train), seed, how,
        )  # fmt: skip

    def check_overlap(self) -> None:
        """Refuse slices of one split that share rows; warn where two roles name the same whole split."""
        roles = list(self.specs)
        for i, first in enumerate(roles):
            for second in roles[i + 1 :]:
                split = self.sources[first]
                same = split == self.sources[second]
                shared = np.intersect1d(self.rows[first], self.rows[second]) if same else []
                if not len(shared):
                    continue
                a, b = self.specs[first], self.specs[second]
                if a == b:
                    log.warning(
                        "%s_split and %s_split are both %r: they hold the same examples, so choosing a checkpoint by "
                        "one tunes it on the other; val_split: 0.1 holds out a tenth of train_split instead",
                        first, second, a,
                    )  # fmt: skip
                    continue
                raise ValueError(
                    f"{first}_split {a!r} and {second}_split {b!r} share {len(shared)} rows of split {split!r} "
                    f"(rows {show_rows(shared)}); make the slices disjoint, e.g. '{split}[:90%]' and '{split}[90%:]', "
                    "or give val_split as a fraction"
                )

    def digest(self) -> dict[str, str]:
        """A hash of each role's rows, for the data module's fingerprint."""
        return {role: hashlib.sha256(rows.astype("<i8").tobytes()).hexdigest() for role, rows in self.rows.items()}
