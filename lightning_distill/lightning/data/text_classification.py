"""Text classification from any Hugging Face ``datasets`` source, tokenized once into Arrow and padded per batch."""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, RandomSampler

from lightning_distill.core.batch import TEACHER_PREFIX
from lightning_distill.core.cache_files import file_sha256
from lightning_distill.core.text_encoding import TextEncoder
from lightning_distill.lightning.data import _token_cache
from lightning_distill.lightning.data._encoding import (
    LengthGroupedBatches,
    PadCollator,
    TokenizedSplit,
    tokenizer_digest,
)
from lightning_distill.lightning.data._labels import label_ids, label_names
from lightning_distill.lightning.data._split import check_positive, check_val_split
from lightning_distill.lightning.data._split_rows import SplitRows

log = logging.getLogger(__name__)

_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".json": "json", ".jsonl": "json"}
_SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}


class TextClassificationDataModule(pl.LightningDataModule):
    """A text-classification data set from the Hub (``dataset`` + ``dataset_config``) or local ``data_files``.

    The data and the label list are read at construction, so ``num_classes``, ``id2label`` and ``label2id`` are
    there for the CLI to link into the models (an exported model then carries the real label names); where the
    label list came from is in ``label_source``. Labels may be a ``ClassLabel`` column (its names, in order), plain
    strings (their sorted distinct values in the training split, so the list is stable whatever the row order), or
    integers (named ``"0"``, ``"1"``, ... unless ``labels`` names them).

    Rows with an empty text or a missing label are refused at construction with the split, column and rows named,
    unless ``drop_empty`` leaves them out (and logs how many). Data with train and test splits only gets a validation
    split with ``val_split: 0.1``: a seeded, label-stratified tenth of the training split, which training then lacks.

    Each split is tokenized once, by ``prepare_data`` (batched ``datasets.map`` over ``num_proc`` processes; ``setup``
    does it where ``prepare_data`` was not called), truncated to ``max_length`` and stored unpadded in Arrow files in
    the token cache (``token_cache_dir``), under a key of the data module's :meth:`fingerprint` (data files, split
    rows, columns, labels, tokenizers, ``max_length``). ``setup`` memory-maps those files in every process, so a
    process holds only the pages it reads and a second run with the same data tokenizes nothing. Each batch is padded
    to its longest example. Batches are dicts with the tokenizer's entries (``input_ids``, ``attention_mask``,
    ``token_type_ids`` where the tokenizer makes them), ``labels``, ``index`` (the example's position in its split,
    the key of the teacher-logits cache), and, where ``teacher_tokenizer`` encodes differently from ``tokenizer``,
    the teacher's own encoding as ``teacher_*`` entries. The batches are a pure function of the examples (no random
    augmentation), so ``deterministic`` is True.

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
        train_split: Name of the training split, or a slice of one in Hugging Face syntax (``train[:90%]``,
            ``train[:1000]``).
        val_split: Name of the validation split, a slice of one (``train[90%:]``; slices of one split must not
            overlap), or a fraction in (0, 1) of the training split to hold out for validation: seeded by ``seed``,
            stratified by label where the labels allow (each class with two or more examples keeps one for
            training), the training split keeping the rest.
        test_split: Name of the test split, or a slice of one.
        num_workers: DataLoader worker processes.
        group_by_length: Batch training examples of similar length together (sorted within shuffled groups of
            ``length_group_size`` batches), so dynamic padding adds few pad tokens. On by default; under DDP each
            process groups its own share of the examples. False draws every batch uniformly at random
            (``shuffle=True``).
        length_group_size: Batches per sorted group. Larger groups pad less but make batches less random. The
            default, 8, was chosen on CLINC150 (``benchmarks/trainer_kd.py``, 4 epochs of cached KD): groups of 50
            batches were faster but ended further under the ``transformers.Trainer`` recipe's validation accuracy
            than groups of 8, and no grouping was slowest (figures in ``docs/results.md``).
        cache_dir: Cache folder of ``datasets`` (default: its own).
        token_cache_dir: Folder of the token cache. Default: ``$LIGHTNING_DISTILL_CACHE/tokenized`` where that is
            set, else ``~/.cache/lightning_distill/tokenized`` (not the data's folder, which may be read-only or, for
            a Hub data set, not exist). On a cluster, give a folder every node can read, or let each node build its
            own (``prepare_data`` runs once per node). Entries are never deleted: remove old ones by hand.
        num_proc: Processes that tokenize in ``prepare_data`` (``datasets.map``'s ``num_proc``); 1 tokenizes in the
            calling process.
        seed: Seed of the validation cut when ``val_split`` is a fraction.
        drop_empty: Leave out rows whose text is empty or whose label is missing, logging how many per split; by
            default such rows are an error that names them.
    """

    deterministic: bool = True
    _checked_cache: Path | None = None  # the token cache entry this process has verified

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
        val_split: float | str = "validation",
        test_split: str = "test",
        num_workers: int = 0,
        group_by_length: bool = True,
        length_group_size: int = 8,
        cache_dir: str | None = None,
        seed: int = 0,
        drop_empty: bool = False,
        token_cache_dir: str | None = None,
        num_proc: int = 1,
    ) -> None:
        super().__init__()
        if (dataset is None) == (data_files is None):
            raise ValueError(
                "give exactly one of dataset (a Hub name) and data_files (local files), got "
                f"dataset={dataset!r}, data_files={data_files!r}"
            )
        if max_length < 2:
            raise ValueError(f"max_length must be at least 2, got {max_length}")
        counts = {"batch_size": batch_size, "num_proc": num_proc, "length_group_size": length_group_size}
        for name, value in {**counts, "eval_batch_size": 1 if eval_batch_size is None else eval_batch_size}.items():
            check_positive(name, value)
        val_split = check_val_split(val_split)
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
        self.length_group_size = length_group_size
        self.seed = seed
        self.drop_empty = drop_empty
        self.token_cache_dir = token_cache_dir
        self.num_proc = num_proc
        self._fingerprint, self._encoder = None, None  # computed at first use (encode builds a TextEncoder)
        self._split_rows = self._load(cache_dir)
        self._raw = self._split_rows.raw
        self._sources = self._split_rows.sources
        self.tokenizer = self._load_tokenizer(tokenizer, "tokenizer")
        self.teacher_tokenizer = (
            self._load_tokenizer(teacher_tokenizer, "teacher_tokenizer") if teacher_tokenizer else None
        )
        self.teacher_encodes_separately = self.teacher_tokenizer is not None and tokenizer_digest(
            self.teacher_tokenizer
        ) != tokenizer_digest(self.tokenizer)
        if self.teacher_tokenizer is not None and not self.teacher_encodes_separately:
            log.info(
                "teacher_tokenizer %r encodes like tokenizer %r: the batches carry one encoding",
                teacher_tokenizer,
                tokenizer,
            )
        names, self.label_source = label_names(self._split_rows, labels)
        self.id2label: dict[int, str] = dict(enumerate(names))
        self.label2id: dict[str, int] = {name: i for i, name in enumerate(names)}
        self.num_classes = len(names)
        if isinstance(val_split, float):
            self._split_rows.hold_out(self._label_ids("train"), val_split, seed)
        self._split_rows.check_overlap()
        self._encoded: dict[str, TokenizedSplit] = {}

    # --- loading and checking ---------------------------------------------------------------------------------------

    def _load(self, cache_dir: str | None) -> SplitRows:
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
        return SplitRows(raw, source, self.splits, self.text_column, self.label_column, self.drop_empty)

    def _load_tokenizer(self, name: str, what: str) -> Any:
        from transformers import AutoTokenizer

        from lightning_distill.core.models.pretrained import from_pretrained

        try:
            tokenizer = from_pretrained(AutoTokenizer, name, what)
        except OSError as error:
            raise OSError(f"could not load {what} {name!r}: {error}") from error
        if tokenizer.pad_token_id is None:
            raise ValueError(f"{what} {name!r} has no pad token, so batches cannot be padded; set one when saving it")
        return tokenizer

    def _label_ids(self, role: str) -> np.ndarray:
        return label_ids(self._split_rows, role, list(self.label2id), self.label_source)

    # --- tokenization ---------------------------------------------------------------------------------------------

    def _tokenizers(self) -> dict[str, Any]:
        tokenizers = {"": self.tokenizer}
        if self.teacher_encodes_separately:
            tokenizers[TEACHER_PREFIX] = self.teacher_tokenizer
        return tokenizers

    def token_cache_folder(self) -> Path:
        """The token cache entry of this data module: the cache folder / a hash of :meth:`fingerprint` and of what
        decides the stored columns (the tokenizers' model inputs, the storage format)."""
        spec = {
            "fingerprint": self.fingerprint(),
            "format": _token_cache.FORMAT,
            "inputs": {prefix: list(tok.model_input_names) for prefix, tok in self._tokenizers().items()},
        }
        key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:32]
        return _token_cache.cache_root(self.token_cache_dir) / key

    def prepare_data(self) -> None:
        """Tokenize every split into the token cache, unless it is there already and sound (Lightning calls this once
        per node, before ``setup`` in every process); a damaged entry is tokenized again, with a warning."""
        folder = self.token_cache_folder()
        if _token_cache.ready(folder, self.splits):
            log.info("token cache %s found: nothing to tokenize", folder)
        else:
            self._tokenize(folder)
        self._checked_cache = folder

    def _tokenize(self, folder: Path) -> None:
        splits = {
            role: (self._raw[self._sources[role]], self._split_rows.rows[role], self._label_ids(role))
            for role in self.splits
        }
        encoder = {"tokenizers": self._tokenizers(), "text_column": self.text_column, "max_length": self.max_length}
        _token_cache.build(folder, splits, encoder, num_proc=self.num_proc, batch_size=1000)

    def setup(self, stage: str | None = None) -> None:
        """Memory-map the tokenized splits from the token cache, verified first (tokenizing them where it lacks them or
        they are damaged); a process that ran ``prepare_data`` does not verify them twice."""
        if all(role in self._encoded for role in self.splits):
            return
        folder = self.token_cache_folder()
        if self._checked_cache != folder:
            if not _token_cache.ready(folder, self.splits):
                log.info("token cache %s not found or damaged: tokenizing in this process", folder)
                self._tokenize(folder)
            self._checked_cache = folder
        for role in self.splits:
            self._encoded.setdefault(role, TokenizedSplit.from_disk(str(folder / role)))

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

    def dataset(self, split: str) -> TokenizedSplit:
        """The tokenized examples of ``split`` (``train``, ``val``/``validation``, ``test`` or a split's own name)."""
        role = self._role(split)
        self.setup()
        return self._encoded[role]

    def collator(self) -> PadCollator:
        """Pads each batch to its longest example and makes the attention masks the models take."""
        pad_values, masks = {}, {}
        for prefix, tokenizer in self._tokenizers().items():
            pad_values[prefix + "input_ids"] = tokenizer.pad_token_id
            if "attention_mask" in tokenizer.model_input_names:
                masks[prefix + "attention_mask"] = prefix + "input_ids"
        return PadCollator(pad_values, left=self.tokenizer.padding_side == "left", masks=masks)

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
        return DataLoader(
            dataset,
            batch_sampler=LengthGroupedBatches(
                RandomSampler(dataset), self.batch_size, lengths=dataset.lengths(), group_size=self.length_group_size
            ),
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
        texts = self._split_rows.values(self._sources[role], self.text_column, self._split_rows.rows[role])
        return texts.to_pylist(), torch.from_numpy(self._label_ids(role))

    def encode(self, raw: str | Sequence[str]) -> dict[str, Tensor]:
        """The student's inputs for raw texts: tokenized, truncated and padded to the longest text.

        What the tokenizer's call gives, through the Rust tokenizer directly where it agrees (:class:`TextEncoder`):
        at batch 1 the tokenizer's Python wrapper costs more than a small student's forward.
        """
        if self._encoder is None or not self._encoder.fits(self.tokenizer, self.max_length):
            self._encoder = TextEncoder(self.tokenizer, self.max_length, "pt")
        return self._encoder(raw)

    def example_input(self, n: int = 1) -> dict[str, Tensor]:
        """The first ``n`` test texts, encoded for the student (for export and latency measurement)."""
        return self.encode(self.benchmark_data("test")[0][:n])

    # --- what the teacher-logits cache is keyed by -----------------------------------------------------------------

    def fingerprint(self) -> str:
        """A hash of the data source, split settings and rows, columns, labels, tokenizers and truncation.

        These are the ingredients of the teacher's inputs: the rows of each split (after slices, a held-out
        validation fraction and ``drop_empty``) are hashed too, so a teacher-logits cache never serves another split.
        It keys the token cache as well, and is computed once per data module (the data files are read once).
        """
        if self._fingerprint is not None:
            return self._fingerprint
        if self.data_files is not None:
            files = {}
            for split, pattern in sorted(self.data_files.items()):
                for path in sorted(glob.glob(pattern)):
                    files[f"{split}:{Path(path).name}"] = file_sha256(path)
            source: Any = files
        else:
            source = [self.dataset_name, self.dataset_config, {s: self._raw[s]._fingerprint for s in self._raw}]
        spec = {
            "source": source,
            "splits": self.splits,
            "rows": self._split_rows.digest(),
            "columns": [self.text_column, self.label_column],
            "labels": list(self.id2label.values()),
            "tokenizer": tokenizer_digest(self.tokenizer),
            "teacher_tokenizer": tokenizer_digest(self.teacher_tokenizer) if self.teacher_tokenizer else None,
            "max_length": self.max_length,
        }
        self._fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        return self._fingerprint
