"""Deterministic train/validation splits, split slices, and the argument checks shared by the data modules."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence

import torch


def check_fraction(name: str, value: float) -> None:
    """Refuse a split fraction outside (0, 1), naming the argument."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value}")


def check_positive(name: str, value: int) -> None:
    """Refuse a batch size (or other count) below 1, naming the argument."""
    if value < 1:
        raise ValueError(f"{name} must be positive, got {value}")


def check_val_split(value: float | str) -> float | str:
    """A ``val_split``: a split name (or slice) as given, a number as a fraction in (0, 1) of the training split."""
    if isinstance(value, str):
        return value
    if not 0.0 < float(value) < 1.0:
        raise ValueError(
            f"val_split as a fraction of the training split must be in (0, 1), got {value}; or give the name of a "
            "validation split"
        )
    return float(value)


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Shuffle ``range(n)`` with ``seed`` and cut off the last ``val_fraction`` of it as validation indices."""
    check_fraction("val_fraction", val_fraction)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(n * val_fraction))
    return order[:-n_val], order[-n_val:]


_SLICE = re.compile(r"(?P<name>[^\[\]]+?)(?:\[(?P<start>[+-]?\d+%?)?:(?P<stop>[+-]?\d+%?)?\])?")


def parse_split(spec: str) -> tuple[str, str | None]:
    """Split ``"train[:90%]"`` into the split's name and its slice (``":90%"``); a plain name has slice None.

    Raises:
        ValueError: ``spec`` is neither a name nor a name with one slice of rows or percentages.
    """
    match = _SLICE.fullmatch(spec.strip())
    if match is None:
        raise ValueError(
            f"split {spec!r} is neither a split name nor one slice of a split, such as 'train[:90%]', 'train[90%:]' "
            "or 'train[:1000]' (combining splits with '+' is not supported)"
        )
    if match["start"] is None and match["stop"] is None and "[" not in spec:
        return match["name"], None
    return match["name"], f"{match['start'] or ''}:{match['stop'] or ''}"


def slice_range(n: int, part: str | None) -> range:
    """The rows of a split of ``n`` rows that the slice ``part`` (``"a:b"``, rows or percentages) selects.

    Percentages round to the nearest row, as Hugging Face ``datasets`` does, so ``[:90%]`` and ``[90%:]`` are
    complementary; negative bounds count from the end, as in Python. A ``range``, so no row list is built.
    """
    if part is None:
        return range(n)

    def bound(text: str) -> int | None:
        if not text:
            return None
        return round(int(text[:-1]) * n / 100) if text.endswith("%") else int(text)

    start, stop = part.split(":")
    return range(n)[bound(start) : bound(stop)]


def slice_rows(n: int, part: str | None) -> list[int]:
    """:func:`slice_range` as a list."""
    return list(slice_range(n, part))


def _keep_one_per_class(
    labels: Sequence[int], train: list[int], val: list[int], rng: random.Random
) -> tuple[list[int], list[int]]:
    """Swap validation examples back so every class with examples in ``val`` keeps one in ``train``."""
    in_train = Counter(labels[p] for p in train)
    for label in sorted({labels[p] for p in val} - set(in_train)):
        back = next(p for p in val if labels[p] == label)
        spare = [p for p in train if in_train[labels[p]] >= 2]
        val.remove(back)
        train.append(back)
        in_train[label] += 1
        if spare:  # keep the validation size: a class with two or more training examples gives one
            out = rng.choice(spare)
            train.remove(out)
            val.append(out)
            in_train[labels[out]] -= 1
    return train, val


def stratified_split(labels: Sequence[int], fraction: float, seed: int) -> tuple[list[int], list[int], str]:
    """A seeded cut of ``fraction`` of the positions of ``labels`` for validation, stratified where the labels allow.

    Classes with a single example stay in training; every class with two or more keeps at least one in training.
    The cut is stratified (scikit-learn's ``train_test_split``) when the validation and training parts can each hold
    every class; else it is a seeded shuffle.

    Returns:
        The sorted training positions, the sorted validation positions, and a line saying how the cut was made.

    Raises:
        ValueError: too few examples to hold any out under those rules.
    """
    from sklearn.model_selection import train_test_split

    counts = Counter(labels)
    pool = [p for p, label in enumerate(labels) if counts[label] >= 2]
    classes = len({labels[p] for p in pool})
    wanted = max(1, round(len(labels) * fraction))
    n_val = min(wanted, len(pool) - classes)
    if n_val < 1:
        raise ValueError(
            f"cannot hold out a validation fraction of {len(labels)} examples while every class keeps one for "
            f"training ({classes} classes have two or more examples); use more data or a validation split"
        )
    pool_labels = [labels[p] for p in pool]
    if n_val >= classes and len(pool) - n_val >= classes:
        train, val = train_test_split(pool, test_size=n_val, random_state=seed, stratify=pool_labels)
        how = "stratified by label"
    else:
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed)).tolist()
        train, val = [pool[i] for i in order[n_val:]], [pool[i] for i in order[:n_val]]
        how = f"not stratified: {n_val} validation examples cannot hold all {classes} classes"
    train, val = _keep_one_per_class(labels, list(train), list(val), random.Random(seed))
    if n_val < wanted:
        how += f"; {n_val} validation examples instead of {wanted}, so that every class keeps one for training"
    singles = len(labels) - len(pool)
    if singles:
        how += f"; {singles} examples of classes with a single example stay in training"
    return sorted(train + [p for p, label in enumerate(labels) if counts[label] == 1]), sorted(val), how
