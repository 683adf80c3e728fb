"""``PredictionWriter``: what ``trainer.predict`` returns, written to a CSV file under the run's folder.

Rows are streamed batch by batch to one part file per process, so memory stays bounded however large the predicted
split is; when the epoch ends the first process merges the parts in dataset order (the indices Lightning's sampler
wrapper records for each batch) into one file, written atomically. Under DDP, ``DistributedSampler`` repeats a few
examples to give every process as many batches: each index is written once.
"""

from __future__ import annotations

import csv
import heapq
import io
import secrets
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lightning_distill.core.atomic import atomic_path

DEFAULT_FILE_NAME = "predictions.csv"


class PredictionWriter(BasePredictionWriter):
    """Write predictions (one row per example, in dataset order) to ``predictions.csv``.

    Columns: ``index`` (the example's position in the predicted split), ``label_id`` (the argmax of the logits that
    ``predict_step`` returns), ``label`` (the class name, where the data module has ``id2label``) and, with
    ``probabilities``, one ``prob_<label>`` column per class (the softmax of the logits). With several predict
    dataloaders a ``dataloader`` column comes first.

    Args:
        path: The CSV file to write. None writes ``predictions.csv`` in the run's folder (``trainer.log_dir``, or
            ``trainer.default_root_dir`` without a logger).
        probabilities: Also write each class's probability.
    """

    def __init__(self, path: str | None = None, probabilities: bool = False) -> None:
        super().__init__(write_interval="batch")
        if path is not None and (not path or path.endswith(("/", "\\"))):
            raise ValueError(f"PredictionWriter path must name a file such as runs/x/predictions.csv, got {path!r}")
        self.path = path
        self.probabilities = probabilities
        self._target: Path | None = None
        self._part: Path | None = None
        self._token = ""
        self._part_file: io.TextIOWrapper | None = None
        self._part_writer: Any = None
        self._last_key: tuple[int, int] | None = None
        self._in_order = True
        self._num_classes: int | None = None

    def output_path(self, trainer: pl.Trainer) -> Path:
        """Where the predictions go: ``path``, or ``predictions.csv`` in the run's folder."""
        if self.path is not None:
            return Path(self.path)
        return Path(trainer.log_dir or trainer.default_root_dir) / DEFAULT_FILE_NAME

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Every process calls this: trainer.log_dir and the token are broadcast from the first.
        self._target = self.output_path(trainer)
        self._token = trainer.strategy.broadcast(secrets.token_hex(4))
        self._part = self._part_path(trainer.global_rank)
        self._part.parent.mkdir(parents=True, exist_ok=True)
        self._part_file = self._part.open("w", newline="", encoding="utf-8")
        self._part_writer = csv.writer(self._part_file)
        self._last_key, self._in_order, self._num_classes = None, True, None

    @override
    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: Any,
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        if not batch_indices:
            raise ValueError(
                "PredictionWriter needs the index of each predicted example, which Lightning records only for a "
                "torch DataLoader; make the data module's predict_dataloader return a DataLoader"
            )
        label_ids, probabilities = self._split(prediction, len(batch_indices))
        for row, index in enumerate(batch_indices):
            key = (dataloader_idx, int(index))
            self._in_order = self._in_order and (self._last_key is None or key >= self._last_key)
            self._last_key = key
            probs = [format(p, ".6g") for p in probabilities[row]] if probabilities is not None else []
            self._part_writer.writerow([dataloader_idx, int(index), label_ids[row], *probs])

    def _split(self, prediction: Any, rows: int) -> tuple[list[int], list[list[float]] | None]:
        """Label ids and (with ``probabilities``) probabilities of one batch's ``prediction``."""
        if not isinstance(prediction, torch.Tensor) or prediction.ndim not in (1, 2) or len(prediction) != rows:
            shape = tuple(prediction.shape) if isinstance(prediction, torch.Tensor) else type(prediction).__name__
            raise ValueError(
                f"PredictionWriter expects predict_step to return logits of shape (batch, classes) or label ids of "
                f"shape (batch,) for a batch of {rows} examples, got {shape}"
            )
        if prediction.ndim == 1:
            if self.probabilities:
                raise ValueError(
                    "PredictionWriter(probabilities=True) needs logits, but predict_step returned label ids; return "
                    "the logits from predict_step or set probabilities to false"
                )
            return prediction.long().tolist(), None
        self._num_classes = prediction.shape[-1]
        logits = prediction.detach().float()
        probabilities = logits.softmax(-1).tolist() if self.probabilities else None
        return logits.argmax(-1).tolist(), probabilities

    @override
    def on_predict_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._close_part()
        if not self._in_order and self._part is not None:  # a shuffled loader: sort this process's rows alone
            rows = sorted(_read_rows(self._part), key=_row_key)
            with self._part.open("w", newline="", encoding="utf-8") as file:
                csv.writer(file).writerows(rows)
        trainer.strategy.barrier()
        if trainer.is_global_zero and self._target is not None and self._part is not None:
            parts = [self._part_path(rank) for rank in range(trainer.world_size)]
            names = getattr(trainer.datamodule, "id2label", None) if trainer.datamodule is not None else None
            count = self._merge(parts, trainer.predict_loop.num_dataloaders, names)
            rank_zero_info(f"predictions: {self._target} ({count} rows)")
            for part in parts:
                part.unlink(missing_ok=True)
        trainer.strategy.barrier()

    def _merge(self, parts: list[Path], num_dataloaders: int, id2label: Any) -> int:
        """Write the rows of ``parts`` to the target in dataset order, each index once; returns the row count."""
        names = {int(k): str(v) for k, v in id2label.items()} if isinstance(id2label, dict) else {}
        header = (["dataloader"] if num_dataloaders > 1 else []) + ["index", "label_id"]
        header += ["label"] if names else []
        if self.probabilities and self._num_classes is not None:
            header += [f"prob_{names.get(i, i)}" for i in range(self._num_classes)]
        count, previous = 0, None
        assert self._target is not None
        with atomic_path(self._target) as temporary, temporary.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(header)
            for row in heapq.merge(*(_read_rows(part) for part in parts), key=_row_key):
                key = _row_key(row)
                if key == previous:  # DistributedSampler's padding repeats an example on another process
                    continue
                previous, count = key, count + 1
                label_id = int(row[2])
                label = [names.get(label_id, "")] if names else []
                writer.writerow(row[0 if num_dataloaders > 1 else 1 : 3] + label + row[3:])
        return count

    def _part_path(self, rank: int) -> Path:
        """The file process ``rank`` streams its rows to, beside the target (hidden; removed after the merge)."""
        assert self._target is not None
        return self._target.with_name(f".{self._target.name}.rank{rank}-{self._token}.part")

    def _close_part(self) -> None:
        if self._part_file is not None:
            self._part_file.close()
            self._part_file = None

    @override
    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._close_part()
        if self._part is not None:
            self._part.unlink(missing_ok=True)


def _row_key(row: list[str]) -> tuple[int, int]:
    return int(row[0]), int(row[1])


def _read_rows(path: Path) -> Iterator[list[str]]:
    if not path.exists():
        return
    with path.open(newline="", encoding="utf-8") as file:
        yield from csv.reader(file)
