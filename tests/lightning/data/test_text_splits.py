"""Text data without a validation split, and rows without a text or a label: named before any training."""

import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
from conftest import tiny_trainer
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer

from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.lightning.modules import DistillationModule


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _train_test(folder: Path, labels: str = "string") -> dict[str, str]:
    """BANKING77-style CSV files: a train and a test split, no validation split."""
    files = write_data(folder, labels=labels, suffix="csv")
    Path(files.pop("validation")).unlink()
    return files


def _data(tokenizer: str, files: dict[str, str], **kwargs) -> TextClassificationDataModule:
    kwargs.setdefault("val_split", 0.25)
    return TextClassificationDataModule(tokenizer=tokenizer, data_files=files, label_column="intent", **kwargs)


def _blank(path: str, rows: list[int], column: int) -> None:
    """Empty the cell of ``column`` (0 = text, 1 = label) in the given data rows (0-based, header not counted)."""
    lines = Path(path).read_text().splitlines()
    for row in rows:
        cells = lines[row + 1].rsplit(",", 1)
        cells[column] = ""
        lines[row + 1] = ",".join(cells)
    Path(path).write_text("\n".join(lines) + "\n")


def test_val_split_fraction_holds_out_a_stratified_seeded_part_of_train(tmp_path: Path, tokenizer: str) -> None:
    files = _train_test(tmp_path)
    data = _data(tokenizer, files, val_split=0.25, seed=0)
    data.setup("fit")
    train_texts, train_labels = data.benchmark_data("train")
    val_texts, val_labels = data.benchmark_data("val")
    assert (len(train_texts), len(val_texts)) == (36, 12)
    # together the two parts are the training file, each row once: no overlap, nothing lost
    file_texts = Path(files["train"]).read_text().splitlines()[1:]
    parts = [
        f"{t},{data.id2label[int(y)]}"
        for t, y in zip(train_texts + val_texts, train_labels.tolist() + val_labels.tolist(), strict=True)
    ]
    assert Counter(parts) == Counter(file_texts)
    assert Counter(val_labels.tolist()) == {0: 4, 1: 4, 2: 4}  # stratified: 16 per class, a quarter of each
    assert data.benchmark_data("val")[0] == _data(tokenizer, files, val_split=0.25, seed=0).benchmark_data("val")[0]
    assert data.benchmark_data("val")[0] != _data(tokenizer, files, val_split=0.25, seed=1).benchmark_data("val")[0]
    # the label list comes from the whole training file, whatever the cut
    assert list(data.id2label.values()) == sorted(INTENTS)


def test_a_train_test_pair_fits_with_a_held_out_fraction_and_cached_teacher_logits(
    tmp_path: Path, tokenizer: str
) -> None:
    data = _data(tokenizer, _train_test(tmp_path / "data"), val_split=0.25, batch_size=8)
    teacher_dir = write_bert(tmp_path / "teacher", layers=2, labels=sorted(INTENTS))
    id2label = dict(enumerate(sorted(INTENTS)))
    teacher = TransformerClassifier(teacher_dir, id2label=id2label)
    student = StudentFromTeacher(teacher_dir, layers=[0], id2label=id2label)
    module = DistillationModule(student, teacher, loss=KDLoss(), num_classes=3, cache_teacher_logits=True)
    trainer = tiny_trainer(limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0)
    trainer.fit(module, data)
    # the cache numbers the 36 remaining training examples by their index in the training part
    assert module.cached_teacher_logits.shape == (36, 3)
    batch = next(iter(data.val_dataloader()))
    assert sorted(i for b in data.val_dataloader() for i in b["index"].tolist()) == list(range(12))
    assert "val/loss" in trainer.callback_metrics and batch["labels"].dtype == torch.long


def test_slices_of_one_split_work_and_overlapping_slices_are_refused(tmp_path: Path, tokenizer: str) -> None:
    files = _train_test(tmp_path)
    data = _data(tokenizer, files, train_split="train[:75%]", val_split="train[75%:]")
    assert len(data.dataset("train")) == 36 and len(data.dataset("val")) == 12
    texts = Path(files["train"]).read_text().splitlines()[1:]
    assert [f"{t},{data.id2label[int(y)]}" for t, y in zip(*data.benchmark_data("val"), strict=True)] == texts[36:]
    with pytest.raises(ValueError, match=r"train_split 'train\[:80%\]' and val_split 'train\[75%:\]' share 2 rows"):
        _data(tokenizer, files, train_split="train[:80%]", val_split="train[75%:]")
    with pytest.raises(ValueError, match=r"val_split 'dev\[:10%\]' \(split 'dev'\) is not a split"):
        _data(tokenizer, files, val_split="dev[:10%]")
    with pytest.raises(
        ValueError, match=r"its splits are \['test', 'train'\]; without a validation split, val_split: 0.1"
    ):
        _data(tokenizer, files, val_split="validation")


def test_validating_on_the_test_split_is_said(tmp_path: Path, tokenizer: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="lightning_distill"):
        _data(tokenizer, _train_test(tmp_path), val_split="test")
    assert "val_split and test_split are both 'test'" in caplog.text and "val_split: 0.1" in caplog.text


def test_fingerprint_follows_the_split_settings(tmp_path: Path, tokenizer: str) -> None:
    files = _train_test(tmp_path)
    base = _data(tokenizer, files, val_split=0.25).fingerprint()
    assert _data(tokenizer, files, val_split=0.25).fingerprint() == base
    others = {
        _data(tokenizer, files, val_split=0.25, seed=1).fingerprint(),
        _data(tokenizer, files, val_split=0.5).fingerprint(),
        _data(tokenizer, files, train_split="train[:75%]", val_split="train[75%:]").fingerprint(),
        _data(tokenizer, files, val_split="test").fingerprint(),
    }
    assert base not in others and len(others) == 4


def test_empty_text_and_missing_labels_are_named_at_construction(tmp_path: Path, tokenizer: str) -> None:
    files = _train_test(tmp_path)
    _blank(files["train"], [2, 5], column=0)
    _blank(files["train"], [9], column=1)  # a missing string label: was "'<' not supported between 'NoneType'..."
    _blank(files["test"], [7], column=1)
    # raised by the constructor: before setup, before any Trainer exists
    with pytest.raises(
        ValueError,
        match=r"(?s)split 'train': text_column 'text' is empty in 2 of 48 rows: rows \[2, 5\]"
        r".*split 'train': label_column 'intent' is missing in 1 of 48 rows: rows \[9\]"
        r".*split 'test': label_column 'intent' is missing in 1 of 12 rows: rows \[7\]"
        r".*Fill those cells or delete those rows.*drop_empty: true",
    ):
        _data(tokenizer, files, val_split="test")


def test_a_missing_integer_label_is_named_not_a_float_column(tmp_path: Path, tokenizer: str) -> None:
    files = _train_test(tmp_path, labels="int")
    _blank(files["train"], [0, 3, 4, 5, 6, 9, 11], column=1)
    with pytest.raises(
        ValueError, match=r"label_column 'intent' is missing in 7 of 48 rows: rows \[0, 3, 4, 5, 6, \.\.\. \(2 more\)\]"
    ):
        _data(tokenizer, files, labels=INTENTS, val_split="test")
    data = _data(tokenizer, files, labels=INTENTS, drop_empty=True, val_split="test")
    assert len(data.dataset("train")) == 41 and data.dataset("train").labels[:2] == [1, 2]


def test_drop_empty_leaves_rows_out_and_says_how_many(
    tmp_path: Path, tokenizer: str, caplog: pytest.LogCaptureFixture
) -> None:
    files = _train_test(tmp_path)
    _blank(files["train"], [2, 5], column=0)
    _blank(files["train"], [5, 9], column=1)
    with caplog.at_level(logging.WARNING, logger="lightning_distill"):
        data = _data(tokenizer, files, drop_empty=True, val_split=0.25)
    assert "drop_empty: left out 3 of the 48 rows of split 'train'" in caplog.text
    assert "rows [2, 5]" in caplog.text and "rows [5, 9]" in caplog.text
    assert len(data.dataset("train")) + len(data.dataset("val")) == 45 and len(data.dataset("test")) == 12
    assert all(text.strip() for text in data.benchmark_data("train")[0] + data.benchmark_data("val")[0])
