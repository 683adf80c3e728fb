"""``PredictionWriter``: what ``trainer.predict`` returns, written to a CSV file under the run's folder.

Rows are streamed batch by batch to one part file per process, so memory stays bounded however large the predicted
split is (except with a shuffled predict loader: each process then sorts its own rows in memory before the merge);
when the epoch ends the first process merges the parts in dataset order (the indices Lightning's sampler wrapper
records for each batch) into one file, written atomically. Under DDP Lightning gives each process its own examples
(``UnrepeatedDistributedSamplerWrapper``: 19 and 18 of 37, none repeated); an example that a sampler of the user's own
predicts on two processes (``DistributedSampler`` pads by repeating) is written once. The part files must be on a
filesystem every process sees: the merge refuses to run when one is missing rather than drop its rows.
"""

from __future__ import annotations

import csv
import heapq
import io
import secrets
from collections.abc import Iterator, Mapping, Sequence
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
    dataloaders a ``dataloader`` column comes first. ``predict_step`` may return a logits tensor, label ids, a mapping
    with a ``logits`` entry or an object with a ``logits`` attribute (Hugging Face outputs).

    Args:
        path: The CSV file to write. None writes ``predictions.csv`` in the run's folder (``trainer.log_dir``, or
            ``trainer.default_root_dir`` without a logger). It must be on a filesystem every process shares.
        probabilities: Also write each class's probability.
        enabled: False writes nothing (``--predictions.enabled false``): for a module whose ``predict_step``
            returns something other than logits, or a run that writes its own predictions.
    """

    def __init__(self, path: str | None = None, probabilities: bool = False, enabled: bool = True) -> None:
        super().__init__(write_interval="batch")
        if path is not None and (not path or path.endswith(("/", "\\"))):
            raise ValueError(f"PredictionWriter path must name a file such as runs/x/predictions.csv, got {path!r}")
        self.path = path
        self.probabilities = probabilities
        self.enabled = enabled
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
        if not self.enabled:
            return
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
        if not self.enabled:
            return
        if not batch_indices:
            raise ValueError(
                "PredictionWriter needs the index of each predicted example, which Lightning records only for a "
                "torch DataLoader; make the data module's predict_dataloader return a DataLoader"
            )
        label_ids, probabilities = self._split(_logits(prediction), len(batch_indices))
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
        if not self.enabled:
            return
        self._close_part()
        if not self._in_order and self._part is not None:  # a shuffled loader: sort this process's rows, in memory
            rows = sorted(_read_rows(self._part), key=_row_key)
            with self._part.open("w", newline="", encoding="utf-8") as file:
                csv.writer(file).writerows(rows)
        trainer.strategy.barrier()
        assert self._target is not None
        parts = [self._part_path(rank) for rank in range(trainer.world_size)]
        missing = [rank for rank, part in enumerate(parts) if not part.is_file()]
        # Every process checks and agrees (a collective), so all raise together instead of the others hanging.
        if not trainer.strategy.reduce_boolean_decision(not missing, all=True):
            who = f"process {trainer.global_rank} cannot see those of processes {missing}" if missing else "another "
            who += "" if missing else "process cannot see them all"
            raise RuntimeError(
                f"PredictionWriter: each process writes its rows to a part file beside {self._target}, but {who}, "
                "so their rows would be missing from the CSV. "
                "The predictions path must be on a filesystem all processes share: set --predictions.path "
                "(PredictionWriter(path=...)) to a file on such a filesystem"
            )
        if trainer.is_global_zero:
            count = merge_parts(parts, self._target, self._header(trainer), self._names(trainer))
            rank_zero_info(f"predictions: {self._target} ({count} rows)")
            for part in parts:
                part.unlink(missing_ok=True)
        trainer.strategy.barrier()

    @staticmethod
    def _names(trainer: pl.Trainer) -> dict[int, str]:
        id2label = getattr(trainer.datamodule, "id2label", None) if trainer.datamodule is not None else None
        return {int(k): str(v) for k, v in id2label.items()} if isinstance(id2label, dict) else {}

    def _header(self, trainer: pl.Trainer) -> list[str]:
        names = self._names(trainer)
        header = (["dataloader"] if trainer.predict_loop.num_dataloaders > 1 else []) + ["index", "label_id"]
        header += ["label"] if names else []
        if self.probabilities and self._num_classes is not None:
            header += [f"prob_{names.get(i, i)}" for i in range(self._num_classes)]
        return header

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
        if not self.enabled:
            return
        self._close_part()
        if self._part is not None:
            self._part.unlink(missing_ok=True)


def merge_parts(parts: Sequence[Path], target: Path, header: list[str], id2label: dict[int, str]) -> int:
    """Write the rows of the sorted part files ``parts`` to ``target`` (atomically) in dataset order.

    Each part row is ``dataloader, index, label_id, *probabilities``; the ``dataloader`` column is kept only where
    ``header`` starts with it, and a ``label`` column is added from ``id2label`` where it is not empty. A row whose
    (dataloader, index) another part already gave (a sampler that pads by repeating examples) is written once.

    Returns:
        The number of rows written.
    """
    start = 0 if header[:1] == ["dataloader"] else 1
    count, previous = 0, None
    with atomic_path(target) as temporary, temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        for row in heapq.merge(*(_read_rows(part) for part in parts), key=_row_key):
            key = _row_key(row)
            if key == previous:  # the same example predicted on two processes: same model, same row
                continue
            previous, count = key, count + 1
            label = [id2label.get(int(row[2]), "")] if id2label else []
            writer.writerow(row[start:3] + label + row[3:])
    return count


def _logits(prediction: Any) -> Any:
    """The logits (or label ids) in what ``predict_step`` returned: a tensor, a ``logits`` entry or attribute."""
    if isinstance(prediction, torch.Tensor):
        return prediction
    if isinstance(prediction, Mapping) and isinstance(prediction.get("logits"), torch.Tensor):
        return prediction["logits"]  # also Hugging Face ModelOutput, a mapping
    if isinstance(getattr(prediction, "logits", None), torch.Tensor):
        return prediction.logits
    keys = f" with keys {sorted(map(str, prediction))}" if isinstance(prediction, Mapping) else ""
    raise ValueError(
        f"PredictionWriter writes the logits that predict_step returns, but it returned a "
        f"{type(prediction).__name__}{keys} without logits; return the logits tensor (or a mapping with a 'logits' "
        "entry, or an object with a .logits attribute), or turn the writer off with --predictions.enabled false "
        "(PredictionWriter(enabled=False)) to keep what predict_step returns (--return_predictions true)"
    )


def _row_key(row: list[str]) -> tuple[int, int]:
    return int(row[0]), int(row[1])


def _read_rows(path: Path) -> Iterator[list[str]]:
    with path.open(newline="", encoding="utf-8") as file:
        yield from csv.reader(file)
