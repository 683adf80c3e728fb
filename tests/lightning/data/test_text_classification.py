from pathlib import Path

import pytest
import torch
from tiny_text import INTENTS, write_data, write_tokenizer

from lightning_distill.lightning.data import TextClassificationDataModule


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _data(tokenizer: str, files: dict[str, str], **kwargs) -> TextClassificationDataModule:
    return TextClassificationDataModule(tokenizer=tokenizer, data_files=files, label_column="intent", **kwargs)


def test_classlabel_parquet_labels_are_known_at_construction(tmp_path: Path, tokenizer: str) -> None:
    data = _data(tokenizer, write_data(tmp_path), batch_size=8)
    assert data.num_classes == 3 and data.id2label == dict(enumerate(INTENTS))
    assert data.label2id == {name: i for i, name in enumerate(INTENTS)}
    assert data.label_source == "ClassLabel names of column 'intent'"
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask", "labels", "index"}
    assert batch["input_ids"].shape[0] == 8 and batch["labels"].dtype == torch.long
    # dynamic padding: the batch is as long as its longest example, and the mask marks the real tokens
    lengths = batch["attention_mask"].sum(1)
    assert batch["input_ids"].shape[1] == int(lengths.max()) < data.max_length
    assert all(int(batch["input_ids"][i, n:].abs().sum()) == 0 for i, n in enumerate(lengths.tolist()))


def test_string_labels_get_a_sorted_stable_label_list(tmp_path: Path, tokenizer: str) -> None:
    data = _data(tokenizer, write_data(tmp_path, labels="string", suffix="csv"))
    assert list(data.id2label.values()) == sorted(INTENTS)
    assert data.label_source == "sorted distinct strings of column 'intent' in split 'train'"
    texts, labels = data.benchmark_data("test")
    assert isinstance(texts[0], str) and labels.shape == (len(texts),)
    raw = data._raw["test"]["intent"]
    assert [data.id2label[int(i)] for i in labels] == raw


def test_integer_labels_and_json_lines(tmp_path: Path, tokenizer: str) -> None:
    data = _data(tokenizer, write_data(tmp_path, labels="int", suffix="jsonl"), labels=INTENTS)
    assert data.id2label == dict(enumerate(INTENTS)) and data.label_source == "the labels argument"


def test_missing_label_column_is_refused(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path)
    with pytest.raises(
        ValueError, match=r"label_column 'label' is not a column of split 'train'.*\['text', 'intent'\]"
    ):
        TextClassificationDataModule(tokenizer=tokenizer, data_files=files)


def test_label_column_of_unexpected_type_is_refused(tmp_path: Path, tokenizer: str) -> None:
    with pytest.raises(ValueError, match=r"has type Value\(.float64.*expected a ClassLabel, strings or integers"):
        _data(tokenizer, write_data(tmp_path, labels="float"))


def test_unknown_string_label_in_the_test_split_is_refused(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path, labels="string", suffix="csv")
    lines = Path(files["test"]).read_text().splitlines()
    lines[1] = lines[1].rsplit(",", 1)[0] + ",cooking"
    Path(files["test"]).write_text("\n".join(lines) + "\n")
    data = _data(tokenizer, files)
    with pytest.raises(ValueError, match=r"split 'test' has labels not in the label list .*\['cooking'\]"):
        data.setup()


def test_bad_sources_are_refused(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path)
    with pytest.raises(ValueError, match="exactly one of dataset"):
        TextClassificationDataModule(tokenizer=tokenizer)
    with pytest.raises(FileNotFoundError, match="matches no file"):
        _data(tokenizer, {**files, "test": str(tmp_path / "missing.parquet")})
    with pytest.raises(ValueError, match=r"val_split 'dev' is not a split .* its splits are \['test', 'train'"):
        _data(tokenizer, files, val_split="dev")


def test_truncation_and_benchmark_encoding(tmp_path: Path, tokenizer: str) -> None:
    data = _data(tokenizer, write_data(tmp_path), max_length=4)
    assert max(len(ids) for ids in data.dataset("train").columns["input_ids"]) == 4
    encoded = data.encode(["book a flight to the sun", "rain"])
    assert encoded["input_ids"].shape == (2, 4) and encoded["attention_mask"][1].tolist() == [1, 1, 1, 0]
    assert data.example_input(2)["input_ids"].shape[0] == 2


def test_teacher_tokenizer_adds_teacher_entries_only_when_it_differs(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path / "data")
    same = _data(tokenizer, files, teacher_tokenizer=tokenizer)
    assert not same.teacher_encodes_separately
    assert not any(key.startswith("teacher_") for key in next(iter(same.train_dataloader())))

    other = write_tokenizer(tmp_path / "teacher_tokenizer", extra_words=7)
    data = _data(tokenizer, files, teacher_tokenizer=other)
    assert data.teacher_encodes_separately and data.teacher_vocab_size == data.vocab_size + 7
    batch = next(iter(data.train_dataloader()))
    assert {"teacher_input_ids", "teacher_attention_mask", "input_ids"} <= set(batch)


def test_fingerprint_follows_data_tokenizer_and_truncation(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path / "data")
    base = _data(tokenizer, files).fingerprint()
    assert _data(tokenizer, files).fingerprint() == base
    assert _data(tokenizer, files, max_length=8).fingerprint() != base
    other = write_tokenizer(tmp_path / "other", extra_words=1)
    assert _data(other, files).fingerprint() != base
    write_data(tmp_path / "data", sizes=(45, 12, 12))
    assert _data(tokenizer, files).fingerprint() != base


def test_group_by_length_batches_similar_lengths_and_covers_every_example(tmp_path: Path, tokenizer: str) -> None:
    data = _data(tokenizer, write_data(tmp_path, sizes=(200, 12, 12)), batch_size=8)  # grouping is the default
    loader = data.train_dataloader()
    batches = list(loader)
    assert len(batches) == len(loader) == 25
    assert sorted(i for b in batches for i in b["index"].tolist()) == list(range(200))
    grouped = sum(b["input_ids"].numel() for b in batches)
    uniform = _data(tokenizer, data.data_files, batch_size=8, group_by_length=False).train_dataloader()
    plain = sum(b["input_ids"].numel() for b in uniform)
    assert grouped < plain
    torch.manual_seed(1)
    first = [b["index"].tolist() for b in data.train_dataloader()]
    torch.manual_seed(1)
    assert [b["index"].tolist() for b in data.train_dataloader()] == first


def test_length_group_size_reaches_the_sampler_and_is_checked(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path, sizes=(200, 12, 12))
    sampler = _data(tokenizer, files, batch_size=8, length_group_size=3).train_dataloader().batch_sampler
    assert sampler.group_size == 3
    assert _data(tokenizer, files, batch_size=8).train_dataloader().batch_sampler.group_size == 8
    with pytest.raises(ValueError, match="length_group_size must be positive, got 0"):
        _data(tokenizer, files, length_group_size=0)
