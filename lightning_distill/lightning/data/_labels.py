"""The label list of a text data set and each split's class ids, read from the Arrow label column."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lightning_distill.lightning.data._split_rows import SplitRows


def label_kind(rows: SplitRows, split: str) -> str:
    """``classlabel``, ``string`` or ``int``: how the label column of ``split`` names its classes.

    Raises:
        ValueError: the column holds another type (floats other than integers with missing cells, lists, ...).
    """
    from datasets import ClassLabel, Value

    column = rows.label_column
    feature = rows.raw[split].features[column]
    if isinstance(feature, ClassLabel):
        return "classlabel"
    if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
        return "string"
    if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
        return "int"
    if isinstance(feature, Value) and feature.dtype.startswith("float") and rows.labels_dropped:
        # pandas reads a CSV column of integers with empty cells as floats (and every split gets the same type)
        kept = rows.values(split, column, rows.kept(split))
        if len(kept) == 0 or pc.all(pc.equal(pc.floor(kept), kept)).as_py():
            return "int"
    raise ValueError(
        f"label_column {column!r} of split {split!r} has type {feature}; expected a ClassLabel, strings or integers"
    )


def label_names(rows: SplitRows, labels: list[str] | None) -> tuple[list[str], str]:
    """The label names in class-id order, and a line saying where they came from.

    Raises:
        ValueError: the splits' label types or ClassLabel names differ, ``labels`` contradicts the ClassLabel names,
            names repeat, or there are fewer than 2 classes.
    """
    column, train = rows.label_column, rows.sources["train"]
    kinds = {split: label_kind(rows, split) for split in rows.sources.values()}
    if len(set(kinds.values())) > 1:
        raise ValueError(f"label_column {column!r} has different types across splits: {kinds}")
    kind = kinds[train]
    if kind == "classlabel":
        names = list(rows.raw[train].features[column].names)
        for split in rows.sources.values():
            if list(rows.raw[split].features[column].names) != names:
                raise ValueError(f"the ClassLabel names of split {split!r} differ from those of split {train!r}")
        if labels is not None and list(labels) != names:
            raise ValueError(
                f"labels {list(labels)[:5]}... differ from the ClassLabel names {names[:5]}... of column "
                f"{column!r}; leave labels out to use the ClassLabel names"
            )
        return names, f"ClassLabel names of column {column!r}"
    # every kept row of the training split's source, so a held-out or sliced validation part changes no name
    values = rows.values(train, column, rows.kept(train))
    if labels is not None:
        names, source = [str(name) for name in labels], "the labels argument"
    elif kind == "string":
        names = sorted(pc.unique(values).to_pylist())
        source = f"sorted distinct strings of column {column!r} in split {train!r}"
    else:
        names = [str(i) for i in range(int(pc.max(values).as_py()) + 1)]
        source = f"integer values 0..{len(names) - 1} of column {column!r} in split {train!r}"
    if len(set(names)) != len(names):
        raise ValueError(f"the label names repeat: {sorted(n for n in set(names) if names.count(n) > 1)[:5]}")
    if len(names) < 2:
        raise ValueError(f"need at least 2 classes, found {names} ({source})")
    return names, source


def label_ids(rows: SplitRows, role: str, names: list[str], label_source: str) -> np.ndarray:
    """The class id of every example of ``role`` (``train``, ``val``, ``test``) as an int64 array.

    Raises:
        ValueError: a string label is not in ``names``, or an integer label is outside ``0..len(names) - 1``.
    """
    split = rows.sources[role]
    values = rows.values(split, rows.label_column, rows.rows[role])
    if label_kind(rows, split) == "string":
        ids = pc.index_in(values, value_set=pa.array(names, type=values.type))
        unknown = pc.filter(values, pc.is_null(ids))
        if len(unknown):
            found = sorted(pc.unique(unknown).to_pylist())
            raise ValueError(f"split {split!r} has labels not in the label list ({label_source}): {found[:5]}")
        return ids.to_numpy().astype(np.int64)
    ids = np.asarray(values.to_numpy(), dtype=np.float64 if pa.types.is_floating(values.type) else np.int64)
    bad = sorted({int(v) for v in ids[(ids < 0) | (ids >= len(names))].tolist()})
    if bad:
        raise ValueError(f"split {split!r} has label ids {bad[:5]} outside 0..{len(names) - 1}")
    return ids.astype(np.int64)
