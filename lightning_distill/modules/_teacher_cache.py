"""The teacher's logits over the training set, computed once and looked up by each batch's ``index``.

The cache is keyed by a hash of everything the logits depend on: the teacher's weights and config, the exact inputs
the teacher sees (token ids after tokenization and truncation, in index order) and, where the data module offers one,
its ``fingerprint()`` (data files, columns, labels, tokenizers). A changed teacher, tokenizer or data file gives a new
key, so a stale cache is never reused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from lightning_distill.batch import logits_of, teacher_inputs
from lightning_distill.safe_load import load_file


def _update(digest: Any, tensor: Tensor) -> None:
    tensor = tensor.detach().cpu().contiguous().reshape(-1)
    digest.update(str((tuple(tensor.shape), tensor.dtype)).encode())
    digest.update(tensor.view(torch.uint8).numpy().tobytes())


def model_digest(model: nn.Module) -> str:
    """A hash of a model's class, config (where it has one) and every tensor of its state dict."""
    digest = hashlib.sha256(type(model).__qualname__.encode())
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "to_dict"):
        digest.update(json.dumps(config.to_dict(), sort_keys=True, default=str).encode())
    for name, value in sorted(model.state_dict().items()):
        digest.update(name.encode())
        if isinstance(value, Tensor):
            _update(digest, value)
    return digest.hexdigest()


def _check_deterministic(datamodule: Any, loader: DataLoader) -> None:
    for owner, what in ((datamodule, "the data module"), (loader.dataset, "the training dataset")):
        if owner is not None and getattr(owner, "deterministic", True) is False:
            raise ValueError(
                f"cache_teacher_logits needs the same inputs every epoch, but {what} ({type(owner).__name__}) says "
                "its inputs are not deterministic (random augmentation?); set cache_teacher_logits: false"
            )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, Mapping):
        return isinstance(b, Mapping) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def teacher_batches(datamodule: Any, train_loader: DataLoader, batch_size: int) -> list[Any]:
    """The training set in index order, collated as for training, checked to be indexed and deterministic."""
    if not isinstance(train_loader, DataLoader):
        raise ValueError(
            f"cache_teacher_logits needs one training DataLoader, got {type(train_loader).__name__}; set "
            "cache_teacher_logits: false"
        )
    _check_deterministic(datamodule, train_loader)
    dataset, collate = train_loader.dataset, train_loader.collate_fn
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate, num_workers=0)
    batches = list(loader)
    if not batches:
        raise ValueError("cache_teacher_logits: the training set is empty")
    first = batches[0]
    if not isinstance(first, Mapping) or "index" not in first:
        keys = sorted(first) if isinstance(first, Mapping) else type(first).__name__
        raise ValueError(
            "cache_teacher_logits looks the teacher's logits up by each example's 'index', but the training batches "
            f"have none (got {keys}); use a data module whose batches carry 'index' (e.g. "
            "TextClassificationDataModule) or set cache_teacher_logits: false"
        )
    # Collating the same examples again must give the same inputs, or cached logits would belong to other inputs.
    again = collate([dataset[i] for i in range(int(first["index"].numel()))])
    if not _same(first, again):
        raise ValueError(
            "cache_teacher_logits needs the same inputs every epoch, but encoding the first training examples twice "
            "gave different batches (random augmentation?); set cache_teacher_logits: false"
        )
    return batches


def inputs_digest(batches: list[Any]) -> str:
    """A hash of the teacher's inputs and the indices of every batch."""
    digest = hashlib.sha256()
    for batch in batches:
        _update(digest, batch["index"])
        inputs = teacher_inputs(batch)
        for key in sorted(inputs):
            digest.update(key.encode())
            _update(digest, inputs[key])
    return digest.hexdigest()


def cache_key(teacher: nn.Module, batches: list[Any], datamodule: Any) -> str:
    """The key of the teacher's logits over ``batches``; see the module docstring."""
    fingerprint = getattr(datamodule, "fingerprint", None)
    parts = [model_digest(teacher), inputs_digest(batches), fingerprint() if callable(fingerprint) else ""]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


@torch.no_grad()
def compute_teacher_logits(teacher: nn.Module, batches: list[Any], device: torch.device) -> Tensor:
    """The teacher's logits for every example, in eval mode and without gradients, as an ``(N, classes)`` tensor."""
    was_training = teacher.training
    teacher.eval()
    size = sum(int(b["index"].numel()) for b in batches)
    logits: Tensor | None = None
    seen = torch.zeros(size, dtype=torch.bool)
    try:
        for batch in batches:
            inputs = {k: v.to(device) for k, v in teacher_inputs(batch).items()}
            out = logits_of(teacher, inputs).float().cpu()
            if logits is None:
                logits = torch.empty(size, out.shape[-1])
            index = batch["index"].long()
            if int(index.min()) < 0 or int(index.max()) >= size:
                raise ValueError(f"batch 'index' entries must number the {size} training examples 0..{size - 1}")
            logits[index] = out
            seen[index] = True
    finally:
        teacher.train(was_training)
    if not bool(seen.all()):
        raise ValueError(f"batch 'index' entries must number the {size} training examples 0..{size - 1} once each")
    return logits


def load_or_compute(
    teacher: nn.Module, batches: list[Any], key: str, cache_dir: str | None, device: torch.device
) -> tuple[Tensor, bool]:
    """The cached logits of ``key`` from ``cache_dir`` if there, else computed (and saved there); and whether loaded."""
    path = Path(cache_dir) / f"teacher_logits_{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        saved = load_file(path, "teacher logits cache")
        if saved.get("key") == key:
            return saved["logits"], True
    logits = compute_teacher_logits(teacher, batches, device)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save({"key": key, "logits": logits}, tmp)
        tmp.replace(path)
    return logits, False
