"""The split helpers shared by the data modules: slices of a split and the seeded, stratified validation cut."""

from collections import Counter

import pytest

from lightning_distill.lightning.data._split import check_val_split, parse_split, slice_rows, stratified_split


def test_slices_follow_hugging_face_syntax_and_percentages_are_complementary() -> None:
    assert parse_split("train") == ("train", None)
    assert parse_split("train[:90%]") == ("train", ":90%") and parse_split("train[90%:]") == ("train", "90%:")
    head, tail = slice_rows(47, ":90%"), slice_rows(47, "90%:")
    assert len(head) == 42 and head + tail == list(range(47))
    assert (
        slice_rows(10, ":3") == [0, 1, 2] and slice_rows(10, "-2:") == [8, 9] and slice_rows(5, None) == list(range(5))
    )
    with pytest.raises(ValueError, match=r"'train\[:90\]\+test' is neither a split name nor one slice"):
        parse_split("train[:90]+test")


def test_stratified_cut_keeps_class_proportions_and_is_seeded() -> None:
    labels = [0] * 40 + [1] * 20 + [2] * 20
    train, val, how = stratified_split(labels, 0.25, seed=0)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(80))
    assert Counter(labels[p] for p in val) == {0: 10, 1: 5, 2: 5} and how == "stratified by label"
    assert stratified_split(labels, 0.25, seed=0)[1] == val
    assert stratified_split(labels, 0.25, seed=1)[1] != val


def test_every_class_with_two_examples_keeps_one_for_training() -> None:
    labels = [0, 0, 1] + [2] * 30  # class 1 has one example, class 0 two
    train, val, how = stratified_split(labels, 0.9, seed=0)
    assert set(train).isdisjoint(val) and sorted(train + val) == list(range(33))
    assert 2 in train  # the single example of class 1 stays in training
    assert {labels[p] for p in train} == {0, 1, 2}
    assert "1 examples of classes with a single example stay in training" in how


def test_too_few_validation_examples_for_every_class_cut_without_stratifying() -> None:
    labels = [i % 10 for i in range(40)]
    train, val, how = stratified_split(labels, 0.1, seed=0)
    assert len(val) == 4 and how.startswith("not stratified: 4 validation examples cannot hold all 10 classes")
    assert {labels[p] for p in train} == set(range(10))


def test_bad_fractions_are_refused() -> None:
    with pytest.raises(ValueError, match=r"val_split as a fraction of the training split must be in \(0, 1\), got 1"):
        check_val_split(1)
    assert check_val_split("validation") == "validation" and check_val_split(0.1) == 0.1
    with pytest.raises(ValueError, match="cannot hold out a validation fraction of 3 examples"):
        stratified_split([0, 1, 2], 0.3, seed=0)
