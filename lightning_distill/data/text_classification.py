"""Text classification from any Hugging Face ``datasets`` source, tokenized once and padded per batch."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_distill.batch import TEACHER_PREFIX
from lightning_distill.data._split import check_positive

log = logging.getLogger(__name__)

_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}
_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


def _tokenizer_digest(tokenizer: Any) -> str:
    """A hash of everything that decides how a tokenizer encodes text (vocabulary, normalizer, special tokens)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None)
        spec.pop("padding", None)
        text = json.dumps(spec, sort_keys=True)
    else:  # a slow tokenizer: its vocabulary and class
        text = json.dumps([type(tokenizer).__name__, sorted(tokenizer.get_vocab().items())])
    return hashlib.sha256(text.encode()).hexdigest()


class _EncodedSplit(Dataset):
    """One tokenized split: each item is a dict of token-id lists plus ``labels`` and ``index``."""

    def __init__(self, columns: dict[str, list], labels: list[int]) -> None:
        self.columns = columns
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = {key: values[index] for key, values in self.columns.items()}
        item["labels"] = self.labels[index]
        item["index"] = index
        return item


class LengthGroupedBatches(Sampler[list[int]]):
    """Shuffled batches of examples of similar length, so dynamic padding pads little.

    The examples are shuffled (with the global torch RNG, so ``seed_everything`` fixes the order), cut into groups of
    ``group_size`` batches, sorted by length inside each group, batched, and the batches shuffled again.

    Args:
        lengths: Token count of each example.
        batch_size: Examples per batch.
        group_size: Batches per sorted group; larger groups pad less but mix lengths less across an epoch.
    """

    def __init__(self, lengths: Sequence[int], batch_size: int, group_size: int = 50) -> None:
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.group_size = group_size

    def __len__(self) -> int:
        return sum(-(-len(part) // self.batch_size) for part in self._parts(list(range(len(self.lengths)))))

    def _parts(self, order: list[int]) -> list[list[int]]:
        chunk = self.batch_size * self.group_size
        return [order[start : start + chunk] for start in range(0, len(order), chunk)]

    def __iter__(self):
        order = torch.randperm(len(self.lengths)).tolist()
        batches = []
        for part in self._parts(order):
            part.sort(key=lambda i: self.lengths[i])
            batches += [part[start : start + self.batch_size] for start in range(0, len(part), self.batch_size)]
        return iter([batches[i] for i in torch.randperm(len(batches)).tolist()])


class PadCollator:
    """Pads token-id lists to the longest example of the batch (dynamic padding) and stacks them into tensors.

    Args:
        pad_values: Padding value per entry (``input_ids`` -> the tokenizer's pad id); other entries pad with 0.
        left: Pad on the left (for tokenizers whose ``padding_side`` is ``"left"``).
    """

    def __init__(self, pad_values: dict[str, int], left: bool = False) -> None:
        self.pad_values = pad_values
        self.left = left

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
        batch: dict[str, Tensor] = {}
        for key in examples[0]:
            values = [example[key] for example in examples]
            if not isinstance(values[0], list):
                batch[key] = torch.tensor(values, dtype=torch.long)
                continue
            length = max(len(v) for v in values)
            pad = self.pad_values.get(key, 0)
            if self.left:
                rows = [[pad] * (length - len(v)) + v for v in values]
            else:
                rows = [v + [pad] * (length - len(v)) for v in values]
            batch[key] = torch.tensor(rows, dtype=torch.long)
        return batch


class TextClassificationDataModule(pl.LightningDataModule):
    """A text-classification data set from the Hub (``dataset`` + ``dataset_config``) or local ``data_files``.

    The data and the label list are read at construction, so ``num_classes``, ``id2label`` and ``label2id`` are
    there for the CLI to link into the models (an exported model then carries the real label names); where the
    label list came from is in ``label_source``. Labels may be a ``ClassLabel`` column (its names, in order), plain
    strings (their sorted distinct values in the training split, so the list is stable whatever the row order), or
    integers (named ``"0"``, ``"1"``, ... unless ``labels`` names them).

    Each split is tokenized once (truncated to ``max_length``) and padded per batch to its longest example. Batches
    are dicts with the tokenizer's entries (``input_ids``, ``attention_mask``, ``token_type_ids`` where the tokenizer
    makes them), ``labels``, ``index`` (the example's position in its split, the key of the teacher-logits cache), and,
    where ``teacher_tokenizer`` encodes differently from ``tokenizer``, the teacher's own encoding as ``teacher_*``
    entries. The batches are a pure function of the examples (no random augmentation), so ``deterministic`` is True.

    Args:
        tokenizer: Hub name or local folder of the (student's) tokenizer.
        dataset: Hub name of the data set, e.g. ``clinc_oos``. Give either this or ``data_files``.
        dataset_config: Hub configuration of ``dataset``, e.g. ``plus``.
        data_files: Split name -> local file (``.parquet``, ``.csv``, ``.json``/``.jsonl``; glob patterns allowed),
            e.g. ``{train: ../shared/data/clinc_oos/plus/train.parquet, ...}``.
        text_column: Column holding the text.
        label_column: Column holding the label (ClassLabel, string or integer).
        labels: The label names in class-id order, to fix the list instead of deriving it from the data.
        teacher_tokenizer: The teacher's tokenizer, where it differs from the student's.
        max_length: Tokens kept per example (longer texts are truncated).
        batch_size: Training batch size.
        eval_batch_size: Validation/test batch size; defaults to ``batch_size``.
        train_split: Name of the training split.
        val_split: Name of the validation split.
        test_split: Name of the test split.
        num_workers: DataLoader worker processes.
        group_by_length: Batch training examples of similar length together (shuffled within groups of 50 batches),
            so dynamic padding adds few pad tokens; faster on CPU, where every padded token costs.
        cache_dir: Cache folder of ``datasets`` (default: its own).
    """

    deterministic: bool = True

    def __init__(
        self,
        tokenizer: str,
        dataset: str | None = None,
        dataset_config: str | None = None,
        data_files: dict[str, str] | None = None,
        text_column: str = "text",
        label_column: str = "label",
        labels: list[str] | None = None,
        teacher_tokenizer: str | None = None,
        max_length: int = 128,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        train_split: str = "train",
        val_split: str = "validation",
        test_split: str = "test",
        num_workers: int = 0,
        group_by_length: bool = False,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if (dataset is None) == (data_files is None):
            raise ValueError(
                "give exactly one of dataset (a Hub name) and data_files (local files), got "
                f"dataset={dataset!r}, data_files={data_files!r}"
            )
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        check_positive("batch_size", batch_size)
        if eval_batch_size is not None:
            check_positive("eval_batch_size", eval_batch_size)
        self.dataset_name = dataset
        self.dataset_config = dataset_config
        self.data_files = dict(data_files) if data_files is not None else None
        self.text_column = text_column
        self.label_column = label_column
        self.tokenizer_name = tokenizer
        self.teacher_tokenizer_name = teacher_tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.splits = {"train": train_split, "val": val_split, "test": test_split}
        self.num_workers = num_workers
        self.group_by_length = group_by_length

        self._raw = self._load(cache_dir)
        self.tokenizer = self._load_tokenizer(tokenizer, "tokenizer")
        self.teacher_tokenizer = (
            self._load_tokenizer(teacher_tokenizer, "teacher_tokenizer") if teacher_tokenizer else None
        )
        self.teacher_encodes_separately = self.teacher_tokenizer is not None and _tokenizer_digest(
            self.teacher_tokenizer
        ) != _tokenizer_digest(self.tokenizer)
        if self.teacher_tokenizer is not None and not self.teacher_encodes_separately:
            log.info(
                "teacher_tokenizer %r encodes like tokenizer %r: the batches carry one encoding",
                teacher_tokenizer,
                tokenizer,
            )
        names, self.label_source = self._label_names(labels)
        self.id2label: dict[int, str] = dict(enumerate(names))
        self.label2id: dict[str, int] = {name: i for i, name in enumerate(names)}
        self.num_classes = len(names)
        self._encoded: dict[str, _EncodedSplit] = {}
        self._texts: dict[str, list[str]] = {}
        self._labels: dict[str, list[int]] = {}

    # --- loading and checking ---------------------------------------------------------------------------------------

    def _load(self, cache_dir: str | None) -> Any:
        from datasets import load_dataset

        if self.dataset_name is not None:
            raw = load_dataset(self.dataset_name, self.dataset_config, cache_dir=cache_dir)
            source = f"dataset {self.dataset_name!r}" + (
                f" (config {self.dataset_config!r})" if self.dataset_config else ""
            )
        else:
            builders = set()
            for split, pattern in self.data_files.items():
                if not glob.glob(pattern):
                    raise FileNotFoundError(f"data_files[{split!r}] = {pattern!r} matches no file")
                suffix = Path(pattern).suffix.lower()
                if suffix not in _BUILDERS:
                    raise ValueError(
                        f"data_files[{split!r}] = {pattern!r}: unsupported file type {suffix!r}; use one of "
                        f"{sorted(_BUILDERS)}"
                    )
                builders.add(_BUILDERS[suffix])
            if len(builders) > 1:
                raise ValueError(f"data_files mix file types {sorted(builders)}; use one type for every split")
            raw = load_dataset(builders.pop(), data_files=self.data_files, cache_dir=cache_dir)
            source = f"data_files {self.data_files}"
        for role, split in self.splits.items():
            if split not in raw:
                raise ValueError(f"{role}_split {split!r} is not a split of {source}; its splits are {sorted(raw)}")
            columns = raw[split].column_names
            for what, column in (("text_column", self.text_column), ("label_column", self.label_column)):
                if column not in columns:
                    raise ValueError(
                        f"{what} {column!r} is not a column of split {split!r} of {source}; its columns are {columns}"
                    )
            text_type = getattr(raw[split].features[self.text_column], "dtype", None)
            if text_type not in ("string", "large_string"):
                raise ValueError(
                    f"text_column {self.text_column!r} of split {split!r} holds {raw[split].features[self.text_column]}"
                    ", not strings"
                )
        return raw

    def _load_tokenizer(self, name: str, what: str) -> Any:
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(name)
        except OSError as error:
            raise OSError(f"could not load {what} {name!r}: {error}") from error
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{what} {name!r} has no pad token, so batches cannot be padded; set one when saving it")
        return tokenizer

    def _label_kind(self, split: str) -> str:
        from datasets import ClassLabel, Value

        feature = self._raw[split].features[self.label_column]
        if isinstance(feature, ClassLabel):
            return "classlabel"
        if isinstance(feature, Value) and feature.dtype in ("string", "large_string"):
            return "string"
        if isinstance(feature, Value) and feature.dtype.startswith(("int", "uint")):
            return "int"
        raise ValueError(
            f"label_column {self.label_column!r} of split {split!r} has type {feature}; expected a ClassLabel, "
            "strings or integers"
        )

    def _label_names(self, labels: list[str] | None) -> tuple[list[str], str]:
        train = self.splits["train"]
        kinds = {split: self._label_kind(split) for split in self.splits.values()}
        if len(set(kinds.values())) > 1:
            raise ValueError(f"label_column {self.label_column!r} has different types across splits: {kinds}")
        kind = kinds[train]
        column = self._raw[train][self.label_column]
        if kind == "classlabel":
            names = list(self._raw[train].features[self.label_column].names)
            for split in self.splits.values():
                if list(self._raw[split].features[self.label_column].names) != names:
                    raise ValueError(f"the ClassLabel names of split {split!r} differ from those of split {train!r}")
            if labels is not None and list(labels) != names:
                raise ValueError(
                    f"labels {list(labels)[:5]}... differ from the ClassLabel names {names[:5]}... of column "
                    f"{self.label_column!r}; leave labels out to use the ClassLabel names"
                )
            return names, f"ClassLabel names of column {self.label_column!r}"
        if labels is not None:
            names, source = [str(name) for name in labels], "the labels argument"
        elif kind == "string":
            names, source = (
                sorted(set(column)),
                f"sorted distinct strings of column {self.label_column!r} in split {train!r}",
            )
        else:
            names = [str(i) for i in range(max(column) + 1)]
            source = f"integer values 0..{len(names) - 1} of column {self.label_column!r} in split {train!r}"
        if len(set(names)) != len(names):
            raise ValueError(f"the label names repeat: {sorted(n for n in set(names) if names.count(n) > 1)[:5]}")
        if len(names) < 2:
            raise ValueError(f"need at least 2 classes, found {names} ({source})")
        return names, source

    def _split_labels(self, split: str) -> list[int]:
        values = self._raw[split][self.label_column]
        kind = self._label_kind(split)
        if kind == "string":
            unknown = sorted(set(values) - set(self.label2id))
            if unknown:
                raise ValueError(
                    f"split {split!r} has labels not in the label list ({self.label_source}): {unknown[:5]}"
                )
            return [self.label2id[v] for v in values]
        bad = sorted({v for v in values if not 0 <= v < self.num_classes})
        if bad:
            raise ValueError(f"split {split!r} has label ids {bad[:5]} outside 0..{self.num_classes - 1}")
        return list(values)

    # --- tokenization ---------------------------------------------------------------------------------------------

    def _tokenize(self, tokenizer: Any, texts: list[str]) -> dict[str, list]:
        encoded = tokenizer(texts, truncation=True, max_length=self.max_length)
        return {key: encoded[key] for key in tokenizer.model_input_names if key in encoded}

    def setup(self, stage: str | None = None) -> None:
        for role, split in self.splits.items():
            if role in self._encoded:
                continue
            texts = list(self._raw[split][self.text_column])
            labels = self._split_labels(split)
            columns = self._tokenize(self.tokenizer, texts)
            if self.teacher_encodes_separately:
                teacher = self._tokenize(self.teacher_tokenizer, texts)
                columns.update({TEACHER_PREFIX + key: value for key, value in teacher.items()})
            self._texts[role], self._labels[role] = texts, labels
            self._encoded[role] = _EncodedSplit(columns, labels)

    @property
    def vocab_size(self) -> int:
        """Tokens of the student's tokenizer, added tokens included (checked against the model's embeddings)."""
        return len(self.tokenizer)

    @property
    def teacher_vocab_size(self) -> int | None:
        """Tokens of the teacher's tokenizer where it has its own, else None."""
        return len(self.teacher_tokenizer) if self.teacher_tokenizer is not None else None

    def _role(self, split: str) -> str:
        if split in self.splits.values():
            return next(role for role, name in self.splits.items() if name == split)
        if split not in _SPLIT_ALIASES:
            raise ValueError(f"unknown split {split!r}; use one of train, val, test or {sorted(self.splits.values())}")
        return _SPLIT_ALIASES[split]

    def dataset(self, split: str) -> _EncodedSplit:
        """The tokenized examples of ``split`` (``train``, ``val``/``validation``, ``test`` or a split's own name)."""
        role = self._role(split)
        self.setup()
        return self._encoded[role]

    def collator(self) -> PadCollator:
        pad_values = {"input_ids": self.tokenizer.pad_token_id}
        if self.teacher_encodes_separately:
            pad_values[TEACHER_PREFIX + "input_ids"] = self.teacher_tokenizer.pad_token_id
        return PadCollator(pad_values, left=self.tokenizer.padding_side == "left")

    def _loader(self, split: str, shuffle: bool, batch_size: int) -> DataLoader:
        return DataLoader(
            self.dataset(split),
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collator(),
            num_workers=self.num_workers,
        )

    def train_dataloader(self) -> DataLoader:
        if not self.group_by_length:
            return self._loader("train", True, self.batch_size)
        dataset = self.dataset("train")
        lengths = [len(ids) for ids in dataset.columns["input_ids"]]
        return DataLoader(
            dataset,
            batch_sampler=LengthGroupedBatches(lengths, self.batch_size),
            collate_fn=self.collator(),
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False, self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False, self.eval_batch_size)

    # --- benchmark interface: raw strings in, tokenization inside every latency figure ------------------------------

    def benchmark_data(self, split: str = "test") -> tuple[list[str], Tensor]:
        """All raw texts of ``split`` and their label ids."""
        role = self._role(split)
        self.setup()
        return self._texts[role], torch.tensor(self._labels[role], dtype=torch.long)

    def encode(self, raw: str | Sequence[str]) -> dict[str, Tensor]:
        """The student's inputs for raw texts: tokenized, truncated and padded to the longest text."""
        texts = [raw] if isinstance(raw, str) else list(raw)
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length, padding=True, return_tensors="pt")
        return {key: encoded[key] for key in self.tokenizer.model_input_names if key in encoded}

    def example_input(self, n: int = 1) -> dict[str, Tensor]:
        """The first ``n`` test texts, encoded for the student (for export and latency measurement)."""
        return self.encode(self.benchmark_data("test")[0][:n])

    # --- what the teacher-logits cache is keyed by -----------------------------------------------------------------

    def fingerprint(self) -> str:
        """A hash of the data source, columns, labels, tokenizers and truncation: the teacher's inputs' ingredients."""
        if self.data_files is not None:
            files = {}
            for split, pattern in sorted(self.data_files.items()):
                for path in sorted(glob.glob(pattern)):
                    files[f"{split}:{Path(path).name}"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
            source: Any = files
        else:
            source = [self.dataset_name, self.dataset_config, {s: self._raw[s]._fingerprint for s in self._raw}]
        spec = {
            "source": source,
            "splits": self.splits,
            "columns": [self.text_column, self.label_column],
            "labels": list(self.id2label.values()),
            "tokenizer": _tokenizer_digest(self.tokenizer),
            "teacher_tokenizer": _tokenizer_digest(self.teacher_tokenizer) if self.teacher_tokenizer else None,
            "max_length": self.max_length,
        }
        return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
