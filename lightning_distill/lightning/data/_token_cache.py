"""The token cache: each split tokenized once (batched ``datasets.map``) into Arrow files that every process maps.

A cache entry is a folder ``<root>/<key>/`` holding one ``save_to_disk`` folder per role (``train``, ``val``,
``test``). It is written under a temporary name and renamed into place when complete, so a reader never sees half an
entry and processes that build the same entry at once do not clash (the first rename wins); a process killed while
building leaves a ``.<key>.*`` folder that can be deleted. Token ids are stored
unpadded, as ``uint16`` where the vocabulary allows (else ``int32``); attention masks are not stored (an unpadded
example's mask is all ones), so the collate function makes them.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT = 1  # the stored layout; part of every key, so a changed layout never reads an old entry
CACHE_ENV = "LIGHTNING_DISTILL_CACHE"


def cache_root(folder: str | None) -> Path:
    """``folder``; else ``$LIGHTNING_DISTILL_CACHE/tokenized``; else ``~/.cache/lightning_distill/tokenized``."""
    if folder:
        return Path(folder).expanduser()
    base = os.environ.get(CACHE_ENV)
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "lightning_distill") / "tokenized"


def stored_keys(tokenizer: Any) -> list[str]:
    """The tokenizer's model inputs that the cache stores: all but the attention mask."""
    probe = tokenizer(["a"], truncation=True, max_length=8)
    return [key for key in tokenizer.model_input_names if key in probe and key != "attention_mask"]


def _features(tokenizers: Mapping[str, Any]) -> Any:
    from datasets import Features, List, Value

    columns = {}
    for prefix, tokenizer in tokenizers.items():
        for key in stored_keys(tokenizer):
            if key == "input_ids":
                dtype = "uint16" if len(tokenizer) <= np.iinfo(np.uint16).max + 1 else "int32"
            else:
                dtype = "uint8" if key == "token_type_ids" else "int32"
            columns[prefix + key] = List(Value(dtype))
    columns["labels"] = Value("int64")
    return Features(columns)


class Encoder:
    """The batched ``map`` function: tokenizes one batch of texts with every tokenizer and adds the labels.

    A plain class (not a closure) so that ``num_proc`` worker processes can unpickle it.

    Args:
        tokenizers: Entry prefix (``""`` for the student, ``"teacher_"``) -> tokenizer.
        text_column: Column of the texts.
        max_length: Tokens kept per example.
        labels: The class id of every example of the split, by position.
    """

    def __init__(self, tokenizers: Mapping[str, Any], text_column: str, max_length: int, labels: np.ndarray) -> None:
        self.tokenizers = dict(tokenizers)
        self.keys = {prefix: stored_keys(tokenizer) for prefix, tokenizer in self.tokenizers.items()}
        self.text_column = text_column
        self.max_length = max_length
        self.labels = labels

    def __call__(self, batch: dict[str, list], indices: list[int]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for prefix, tokenizer in self.tokenizers.items():
            encoded = tokenizer(
                batch[self.text_column], truncation=True, max_length=self.max_length, return_attention_mask=False
            )
            out.update({prefix + key: encoded[key] for key in self.keys[prefix]})
        out["labels"] = self.labels[np.asarray(indices, dtype=np.int64)]
        return out


def build(
    folder: Path, splits: Mapping[str, tuple[Any, np.ndarray, np.ndarray]], encoder: Mapping[str, Any], **options: Any
) -> None:
    """Tokenize every split into the cache entry ``folder`` (if another process has not written it meanwhile).

    Args:
        folder: The entry to write.
        splits: Role -> (source ``datasets.Dataset``, its rows for this role, their class ids).
        encoder: Keyword arguments of :class:`Encoder` but ``labels``.
        options: ``num_proc`` and ``batch_size`` of ``datasets.map``.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    features = _features(encoder["tokenizers"])
    started = time.perf_counter()
    temporary = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    temporary.chmod(0o755)  # mkdtemp makes it private; other users of a shared cache folder read the entry too
    try:
        for role, (source, rows, labels) in splits.items():
            text = encoder["text_column"]
            part = source.select_columns([text]).select(rows)
            num_proc = min(options["num_proc"], len(part)) if options["num_proc"] > 1 and len(part) > 1 else None
            mapped = part.map(
                Encoder(labels=labels, **encoder),
                batched=True,
                batch_size=options["batch_size"],
                with_indices=True,
                num_proc=num_proc,
                remove_columns=[text],
                features=features,
                cache_file_name=str(temporary / f"map-{role}.arrow"),
                new_fingerprint=f"{folder.name[:40]}-{role}",
                desc=f"tokenizing {role}",
            )
            mapped.save_to_disk(str(temporary / role))
            del mapped
            for file in temporary.glob(f"map-{role}*.arrow"):
                file.unlink()
        try:
            temporary.rename(folder)
        except OSError:  # another process finished the same entry first: theirs is as good
            if not (folder / "train").is_dir():
                raise
    finally:
        if temporary.exists():
            shutil.rmtree(temporary, ignore_errors=True)
    log.info("tokenized %s into %s in %.1f s", ", ".join(splits), folder, time.perf_counter() - started)
