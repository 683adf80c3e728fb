"""The token cache: each split tokenized once (batched ``datasets.map``) into Arrow files that every process maps.

A cache entry is a folder ``<root>/<key>/`` holding one ``save_to_disk`` folder per role (``train``, ``val``,
``test``) and a ``meta.json`` recording the roles and every file's size and checksum. It is built under the per-key file
lock ``<root>/<key>.lock``, so processes that need the same entry at once tokenize it once (the others wait, then read
it), into a temporary folder that is renamed into place when complete: a reader never sees half an entry. An entry is
verified before it is read (:func:`ready`): a missing, truncated or overwritten file or an unreadable ``meta.json``
makes it be tokenized again, with a warning naming the file. A process killed while building leaves a
``.<key>.*.tmp`` folder that the next build removes. Token ids are stored unpadded, as ``uint16`` where the
vocabulary allows (else ``int32``); attention masks are not stored (an unpadded
example's mask is all ones), so the collate function makes them.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lightning_distill.core.atomic import clean_temporaries, replace_folder, write_json
from lightning_distill.core.cache_files import META, entry_lock, read_entry, record_files

log = logging.getLogger(__name__)

# The stored layout (2: with meta.json's sizes and checksums); part of every key, so no layout reads another's entry
FORMAT = 2
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


def _problem(folder: Path, roles: Iterable[str]) -> tuple[bool, str | None]:
    """Whether ``folder`` is a sound entry holding ``roles``, and what is wrong with it where it exists but is not."""
    meta, problem = read_entry(folder)
    if meta is None:
        return False, problem
    missing = sorted(set(roles) - set(meta.get("roles", [])))
    if meta.get("format") != FORMAT or missing:
        return False, f"{folder / META} is of format {meta.get('format')} (expected {FORMAT}) or lacks {missing}"
    return True, None


def ready(folder: Path, roles: Iterable[str]) -> bool:
    """Whether the entry ``folder`` is there, complete and sound (every file of its ``meta.json`` has its recorded size
    and checksum); a damaged entry is named in a warning, to be tokenized again."""
    sound, problem = _problem(folder, roles)
    if problem is not None:
        warnings.warn(f"token cache: {problem}; tokenizing again", stacklevel=2)
    return sound


def build(
    folder: Path, splits: Mapping[str, tuple[Any, np.ndarray, np.ndarray]], encoder: Mapping[str, Any], **options: Any
) -> None:
    """Tokenize every split into the cache entry ``folder``, unless another process has built it meanwhile.

    The entry's lock is held throughout, so a second process asking for the same entry waits and then finds it built.

    Args:
        folder: The entry to write.
        splits: Role -> (source ``datasets.Dataset``, its rows for this role, their class ids).
        encoder: Keyword arguments of :class:`Encoder` but ``labels``.
        options: ``num_proc`` and ``batch_size`` of ``datasets.map``.
    """
    with entry_lock(folder):
        if _problem(folder, splits)[0]:
            log.info("token cache %s was built by another process meanwhile", folder)
            return
        clean_temporaries(folder.parent)  # left by processes killed while building
        started = time.perf_counter()
        with replace_folder(folder) as temporary:
            for role, (source, rows, labels) in splits.items():
                _tokenize(temporary, folder.name, role, (source, rows), Encoder(labels=labels, **encoder), options)
            files = record_files(temporary)
            write_json(temporary / META, {"format": FORMAT, "roles": sorted(splits), "files": files})
    log.info("tokenized %s into %s in %.1f s", ", ".join(splits), folder, time.perf_counter() - started)


def _tokenize(
    folder: Path, key: str, role: str, data: tuple[Any, np.ndarray], encode: Encoder, options: Mapping
) -> None:
    """The rows ``data[1]`` of the dataset ``data[0]`` tokenized by ``encode`` and saved to ``folder/role``."""
    source, rows = data
    text = encode.text_column
    part = source.select_columns([text]).select(rows)
    num_proc = min(options["num_proc"], len(part)) if options["num_proc"] > 1 and len(part) > 1 else None
    mapped = part.map(
        encode,
        batched=True,
        batch_size=options["batch_size"],
        with_indices=True,
        num_proc=num_proc,
        remove_columns=[text],
        features=_features(encode.tokenizers),
        cache_file_name=str(folder / f"map-{role}.arrow"),
        new_fingerprint=f"{key[:40]}-{role}",
        desc=f"tokenizing {role}",
    )
    mapped.save_to_disk(str(folder / role))
    del mapped
    for file in folder.glob(f"map-{role}*.arrow"):
        file.unlink()
