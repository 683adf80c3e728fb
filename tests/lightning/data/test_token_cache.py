"""The token cache: splits tokenized once into Arrow files, memory-mapped by every data module that asks again."""

import logging
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_text import write_data, write_tokenizer

from lightning_distill.lightning.data import TextClassificationDataModule, _token_cache


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_tokenizer(tmp_path_factory.mktemp("tokenizer"))


def _data(tokenizer: str, files: dict[str, str], cache: Path, **kwargs) -> TextClassificationDataModule:
    return TextClassificationDataModule(
        tokenizer=tokenizer, data_files=files, label_column="intent", token_cache_dir=str(cache), **kwargs
    )


def test_prepare_data_tokenizes_once_and_a_second_module_only_maps_the_files(
    tmp_path: Path, tokenizer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_data(tmp_path / "data")
    first = _data(tokenizer, files, tmp_path / "cache", max_length=6)
    first.prepare_data()
    folder = first.token_cache_folder()
    assert folder.parent == tmp_path / "cache" and sorted(p.name for p in folder.iterdir()) == [
        "meta.json",
        "test",
        "train",
        "val",
    ]
    # the stored ids are the tokenizer's own, truncated and unpadded, as uint16
    texts = first.benchmark_data("train")[0]
    expected = first.tokenizer(texts, truncation=True, max_length=6)["input_ids"]
    stored = first.dataset("train").columns["input_ids"]
    assert [ids.tolist() for ids in stored] == expected and stored[0].dtype == np.uint16
    assert first.dataset("train").lengths().tolist() == [len(ids) for ids in expected]

    # a cache hit: a new data module (as in a new process) reads the same examples without tokenizing anything
    def refuse(*args, **kwargs):
        raise AssertionError("tokenized again on a cache hit")

    monkeypatch.setattr(type(first.tokenizer), "__call__", refuse)
    second = _data(tokenizer, files, tmp_path / "cache", max_length=6)
    second.setup("fit")
    assert second.token_cache_folder() == folder
    loader = torch.utils.data.DataLoader(second.dataset("train"), batch_size=48, collate_fn=second.collator())
    batch = next(iter(loader))
    assert batch["input_ids"].tolist() == [ids + [0] * (6 - len(ids)) for ids in expected]
    assert batch["attention_mask"].sum(1).tolist() == [len(ids) for ids in expected]
    assert batch["index"].tolist() == list(range(48)) and batch["labels"].tolist() == second.dataset("train").labels[:]


def test_the_cache_key_follows_truncation_tokenizer_and_data(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path / "data")
    base = _data(tokenizer, files, tmp_path / "cache").token_cache_folder()
    assert _data(tokenizer, files, tmp_path / "cache").token_cache_folder() == base
    other = write_tokenizer(tmp_path / "other", extra_words=1)
    changed = {
        _data(tokenizer, files, tmp_path / "cache", max_length=8).token_cache_folder(),
        _data(other, files, tmp_path / "cache").token_cache_folder(),
        _data(tokenizer, files, tmp_path / "cache", val_split=0.25).token_cache_folder(),
        _data(tokenizer, files, tmp_path / "cache", teacher_tokenizer=other).token_cache_folder(),
    }
    write_data(tmp_path / "data", sizes=(45, 12, 12))
    changed.add(_data(tokenizer, files, tmp_path / "cache").token_cache_folder())
    assert base not in changed and len(changed) == 5


def test_num_proc_tokenizes_in_worker_processes_to_the_same_cache(tmp_path: Path, tokenizer: str) -> None:
    files = write_data(tmp_path / "data", sizes=(200, 12, 12))
    one = _data(tokenizer, files, tmp_path / "one")
    two = _data(tokenizer, files, tmp_path / "two", num_proc=2)
    two.prepare_data()
    assert two.token_cache_folder().name == one.token_cache_folder().name  # num_proc changes no stored value
    for split in ("train", "val", "test"):
        first, second = one.dataset(split), two.dataset(split)
        assert len(first) == len(second) and first.labels[:] == second.labels[:]
        pairs = zip(first.columns["input_ids"], second.columns["input_ids"], strict=True)
        assert all(np.array_equal(a, b) for a, b in pairs)
    with pytest.raises(ValueError, match="num_proc must be positive, got 0"):
        _data(tokenizer, files, tmp_path / "two", num_proc=0)


def test_a_second_build_of_the_same_entry_keeps_the_first(
    tmp_path: Path, tokenizer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Two processes without a shared prepare_data may tokenize at once: the first complete entry wins."""
    data = _data(tokenizer, write_data(tmp_path / "data"), tmp_path / "cache")
    data.prepare_data()
    folder = data.token_cache_folder()
    before = sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*"))
    splits = {"train": (data._raw["train"], data._split_rows.rows["train"], data._label_ids("train"))}
    encoder = {"tokenizers": {"": data.tokenizer}, "text_column": "text", "max_length": data.max_length}
    _token_cache.build(folder, splits, encoder, num_proc=1, batch_size=1000)
    assert sorted((p.relative_to(folder), p.stat().st_mtime_ns) for p in folder.rglob("*")) == before
    # no temporary folder left behind, only the entry and its lock file
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name, folder.name + ".lock"]
    with caplog.at_level(logging.INFO, logger="lightning_distill"):
        data.prepare_data()
    assert "found: nothing to tokenize" in caplog.text


def test_a_split_pickles_as_its_folder_not_its_examples(tmp_path: Path, tokenizer: str) -> None:
    """DataLoader workers started by spawn map the cache files instead of receiving a copy of every example."""
    data = _data(tokenizer, write_data(tmp_path / "data", sizes=(2000, 12, 12)), tmp_path / "cache")
    train = data.dataset("train")
    payload = pickle.dumps(train)
    assert len(payload) < 1000
    copy = pickle.loads(payload)
    assert len(copy) == 2000 and all(np.array_equal(copy[i]["input_ids"], train[i]["input_ids"]) for i in (0, 1999))


def test_length_grouped_order_is_drawn_when_the_iterator_is_made() -> None:
    """The DataLoader draws its base seed from the global RNG right after ``iter(sampler)``; the batches must not
    depend on that draw (they did while the sampler was a generator, which changed the recipes' training order)."""
    from lightning_distill.lightning.data._encoding import LengthGroupedBatches

    lengths = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7]
    sampler = LengthGroupedBatches(torch.utils.data.RandomSampler(lengths), 3, lengths=lengths, group_size=2)
    torch.manual_seed(0)
    batches = iter(sampler)
    torch.rand(1)  # what the DataLoader does between iter() and the first batch
    after_a_draw = list(batches)
    torch.manual_seed(0)
    assert after_a_draw == list(iter(sampler))
    assert sorted(i for batch in after_a_draw for i in batch) == list(range(14))
    assert len(after_a_draw) == len(sampler)


def test_length_grouped_batches_take_a_distributed_share() -> None:
    """Under DDP Lightning rebuilds the batch sampler around its ``DistributedSampler``: each process then groups its
    own share, the shares are disjoint, cover every example and give every process the same number of batches."""
    from torch.utils.data.distributed import DistributedSampler

    from lightning_distill.lightning.data._encoding import LengthGroupedBatches

    lengths = np.random.default_rng(0).integers(1, 30, size=101)
    shares = []
    for rank in (0, 1):
        sampler = DistributedSampler(range(101), num_replicas=2, rank=rank, shuffle=True, seed=3)
        batches = list(LengthGroupedBatches(sampler, 4, lengths=lengths, group_size=5))
        assert len(batches) == len(LengthGroupedBatches(sampler, 4, lengths=lengths, group_size=5)) == 13
        # sorted inside each group of 5 batches: the spread of lengths within a batch is small
        assert np.mean([np.ptp(lengths[b]) for b in batches]) < np.ptp(lengths) / 3
        shares.append([i for b in batches for i in b])
    assert len(set(shares[0]) & set(shares[1])) <= 1  # DistributedSampler repeats one example to even the shares
    assert set(shares[0]) | set(shares[1]) == set(range(101))
    dropped = list(LengthGroupedBatches(sampler, 4, drop_last=True, lengths=lengths, group_size=5))
    assert all(len(b) == 4 for b in dropped) and len(dropped) == 12


def _arrow(entry: Path) -> Path:
    (path,) = (entry / "train").glob("*.arrow")
    return path


def _overwrite_same_size(entry: Path) -> None:
    path = _arrow(entry)
    data = path.read_bytes()
    path.write_bytes(data[:-64] + bytes(64))


TOKEN_DAMAGES = {
    "truncated": (lambda e: _arrow(e).write_bytes(_arrow(e).read_bytes()[:100]), r"\.arrow has 100 bytes where"),
    "overwritten": (_overwrite_same_size, r"\.arrow does not match the checksum"),
    "deleted": (lambda e: _arrow(e).unlink(), r"\.arrow is missing"),
    "meta_emptied": (lambda e: (e / "meta.json").write_text(""), r"meta.json is unreadable"),
    "meta_deleted": (lambda e: (e / "meta.json").unlink(), r"meta.json is missing"),
}


@pytest.mark.parametrize("damage", list(TOKEN_DAMAGES))
def test_a_damaged_token_cache_is_tokenized_again_with_a_warning(tmp_path: Path, tokenizer: str, damage: str) -> None:
    files = write_data(tmp_path / "data")
    first = _data(tokenizer, files, tmp_path / "cache")
    first.prepare_data()
    entry = first.token_cache_folder()
    written = {p.relative_to(entry): p.read_bytes() for p in sorted(entry.rglob("*")) if p.is_file()}
    damaged, message = TOKEN_DAMAGES[damage]
    damaged(entry)
    second = _data(tokenizer, files, tmp_path / "cache")
    with pytest.warns(UserWarning, match=f"token cache: .*{message}.*; tokenizing again"):
        second.setup("fit")
    assert {p.relative_to(entry): p.read_bytes() for p in sorted(entry.rglob("*")) if p.is_file()} == written
    expected = first.dataset("train")
    assert second.dataset("train").labels[:] == expected.labels[:]
    assert all(
        np.array_equal(a, b)
        for a, b in zip(second.dataset("train").columns["input_ids"], expected.columns["input_ids"], strict=True)
    )


def test_a_token_cache_build_waits_for_the_lock_and_then_reads_the_entry(
    tmp_path: Path, tokenizer: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A process holding the entry's lock builds it; another that asks meanwhile waits, then finds it built."""
    import threading

    from lightning_distill.core.cache_files import entry_lock

    files = write_data(tmp_path / "data")
    waiting = _data(tokenizer, files, tmp_path / "cache")
    entry = waiting.token_cache_folder()
    lock = entry_lock(entry)
    lock.acquire()
    caplog.set_level(logging.INFO, logger="lightning_distill")
    thread = threading.Thread(target=waiting.prepare_data)
    thread.start()
    thread.join(timeout=2)
    assert thread.is_alive() and not entry.exists()  # waiting for the lock, nothing written
    _data(tokenizer, files, tmp_path / "other").prepare_data()  # "the other process" builds the entry ...
    shutil.copytree(_data(tokenizer, files, tmp_path / "other").token_cache_folder(), entry)
    lock.release()  # ... and lets go
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert "was built by another process meanwhile" in caplog.text  # it tokenized nothing itself
    assert waiting.dataset("train").labels[:] == _data(tokenizer, files, tmp_path / "other").dataset("train").labels[:]
