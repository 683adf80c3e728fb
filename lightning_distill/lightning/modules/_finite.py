"""No silent NaN: a non-finite loss, input or teacher logit stops the fit with a message naming the batch.

What is checked, and why this much:

- The loss, at every training, validation and test step, before it is logged or back-propagated. A NaN loss turns
  every weight NaN at the next optimizer step, after which every later batch is NaN too, so the check must run on the
  step that produced it to name the right batch and to leave the model with the weights of the last good step.
  Checking it costs no kernel and one device-to-host copy of the loss (``loss.item()``, a GPU sync) per step (an
  ``isfinite`` kernel would cost more than the copy), and a fit with the progress bar on (the
  default) already synchronizes every step to show ``train/loss``; ``detect_anomaly`` checks every backward operation
  and costs far more.
- The floating-point tensors of the batch and the teacher's logits, in the first :data:`CHECK_FIRST_BATCHES` batches
  of every epoch and of every validation/test pass: a data set with NaN or inf features is named as such before any
  weight changes, even where the model would hide it (``nan_to_num``, masking). Later batches are not read (an image
  batch is megabytes), but a non-finite input or teacher logit almost always makes the loss non-finite, and then the
  whole batch is examined to say which tensor, which rows (and which ``index``, where the batch has one) were at fault.

The tensors of the first batches are checked together, with one more sync. Under DDP each process checks its own
batches; the process that raises stops, and the others wait for it in the next collective call until the process
group's timeout, as with any exception in one process of a Lightning fit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from lightning_distill.core.batch import batch_index, is_index

CHECK_FIRST_BATCHES = 10
_SHOWN = 5  # rows and parameter names shown in a message


def float_tensors(batch: Any, name: str = "batch") -> Iterator[tuple[str, Tensor]]:
    """Every floating-point tensor of a (nested) batch, named by its place in it (``batch[0]``, ``batch['x']``)."""
    if isinstance(batch, Tensor):
        if batch.is_floating_point() or batch.is_complex():
            yield name, batch
    elif isinstance(batch, Mapping):
        for key, value in batch.items():
            yield from float_tensors(value, f"{name}[{key!r}]")
    elif isinstance(batch, (list, tuple)):
        for i, value in enumerate(batch):
            yield from float_tensors(value, f"{name}[{i}]")


def _all_finite(tensors: list[Tensor]) -> bool:
    """Whether every tensor holds only finite values, with one device-to-host copy."""
    if not tensors:
        return True
    flags = [torch.isfinite(t).all() for t in tensors]
    return bool(flags[0] if len(flags) == 1 else torch.stack(flags).all())


def _stage(module: pl.LightningModule, stage: str) -> str:
    trainer = module._trainer
    if stage == "val" and trainer is not None and trainer.sanity_checking:
        return "validation (sanity check)"
    return {"train": "training", "val": "validation"}.get(stage, stage)


def _where(module: pl.LightningModule, stage: str, batch_idx: int) -> str:
    where = f"epoch {module.current_epoch}, batch {batch_idx}"
    return f"{where} (global step {module.global_step})" if stage == "train" else where


def teacher_description(module: pl.LightningModule) -> str:
    """The teacher's class, and its ``teacher_checkpoint`` where it was loaded from one."""
    checkpoint = module.hparams.get("teacher_checkpoint")
    loaded = f" loaded from teacher_checkpoint {str(checkpoint)!r}" if checkpoint else ""
    return f"the teacher ({type(module.teacher).__name__}{loaded})"


def _rows(batch: Any, tensor: Tensor) -> str:
    """Which rows of ``tensor`` hold non-finite values, and their ``index`` entries where the batch has them."""
    if tensor.dim() == 0:
        return ""
    bad = ~torch.isfinite(tensor.reshape(tensor.shape[0], -1)).all(-1)
    rows = bad.nonzero().flatten().tolist()
    shown = f"{rows[:_SHOWN]}" + (f" and {len(rows) - _SHOWN} more" if len(rows) > _SHOWN else "")
    text = f", in rows {shown} of the batch"
    index = batch_index(batch)
    if is_index(index) and index.shape[:1] == tensor.shape[:1]:
        text += f" (the examples with index {index[rows[:_SHOWN]].tolist()})"
    return text


def _non_finite_inputs(batch: Any) -> list[str]:
    bad = []
    for name, tensor in float_tensors(batch):
        count = int((~torch.isfinite(tensor)).sum())
        if count:
            bad.append(f"{name} has {count} non-finite of {tensor.numel()} values{_rows(batch, tensor)}")
    return bad


def _trained_parameters(module: pl.LightningModule) -> list[tuple[str, Tensor]]:
    teacher = getattr(module, "teacher", None)
    frozen = {id(p) for p in teacher.parameters()} if teacher is not None else set()
    return [(n, p.detach()) for n, p in module.named_parameters() if id(p) not in frozen and p.is_floating_point()]


def _largest(parameters: list[tuple[str, Tensor]]) -> str:
    sizes = [(float(p.abs().max()), name) for name, p in parameters if p.numel()]
    if not sizes:
        return ""
    size, name = max(sizes)
    return f" (its largest weight is {size:.3g} in magnitude, in {name!r})"


def _loss_advice(module: pl.LightningModule, stage: str) -> str:
    parameters = _trained_parameters(module)
    bad = [name for name, p in parameters if not bool(torch.isfinite(p).all())]
    if bad:
        names = f"{bad[:_SHOWN]}" + (f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else "")
        advice = (
            f"the model's parameters {names} are already non-finite: an earlier optimizer step diverged, or the "
            "model or checkpoint was loaded that way"
        )
    else:
        advice = f"the model's outputs overflowed{_largest(parameters)}"
    precision = str(getattr(module._trainer, "precision", "")) if module._trainer is not None else ""
    if stage == "train":
        lr = module.hparams.get("learning_rate")
        advice += f"; lower learning_rate (now {lr}), or clip gradients (trainer gradient_clip_val)"
    if "16" in precision and "bf16" not in precision:
        advice += f"; precision {precision!r} overflows beyond 65504: try 'bf16-mixed' or '32-true'"
    return advice


def check_finite(
    module: pl.LightningModule,
    stage: str,
    batch: Any,
    batch_idx: int,
    loss: Tensor,
    teacher_logits: Tensor | None = None,
) -> None:
    """Raise when ``loss`` is non-finite, or, in the first :data:`CHECK_FIRST_BATCHES` batches of an epoch or pass,
    when a floating-point tensor of ``batch`` or ``teacher_logits`` is; see the module's docstring.

    Args:
        module: The LightningModule of the step (its epoch, step, learning rate and parameters go into the message).
        stage: ``"train"``, ``"val"`` or ``"test"``.
        batch: The batch as the step received it.
        batch_idx: The step's batch index.
        loss: The loss of the step (for evaluation steps, the logged loss).
        teacher_logits: The teacher's logits of the batch, in a distillation step.

    Raises:
        ValueError: naming the stage, epoch and batch, and which input tensor (with its rows), the teacher, or the
            loss was non-finite, with what to do about it.
    """
    finite = math.isfinite(loss.item())  # the only sync of most steps: no kernel, one copy of 4 bytes
    if finite and batch_idx < CHECK_FIRST_BATCHES:
        watched = [tensor for _, tensor in float_tensors(batch)]
        watched += [teacher_logits] if teacher_logits is not None else []
        finite = _all_finite(watched)
    if finite:
        return
    where = f"{_stage(module, stage)} {_where(module, stage, batch_idx)}"
    _raise_for_inputs(batch, where)
    if teacher_logits is not None:
        check_teacher_logits(module, batch, teacher_logits, where)
    raise ValueError(
        f"the {_stage(module, stage)} loss is {loss.item()} at {_where(module, stage, batch_idx)}, with finite "
        f"inputs: {_loss_advice(module, stage)}"
    )


def _raise_for_inputs(batch: Any, where: str) -> None:
    bad_inputs = _non_finite_inputs(batch)
    if bad_inputs:
        raise ValueError(
            f"non-finite values (nan or inf) in the inputs of {where}: {'; '.join(bad_inputs)}. Fix or drop these "
            "examples (e.g. fill missing features) before fitting"
        )


def check_teacher_logits(module: pl.LightningModule, batch: Any, logits: Tensor, where: str) -> None:
    """Raise when the teacher's ``logits`` for ``batch`` are non-finite, naming the inputs instead where they are.

    Args:
        module: A ``DistillationModule``.
        batch: The batch the teacher ran on.
        logits: The teacher's logits of the batch.
        where: Which batch it is, for the message (``"validation epoch 0, batch 3"``).

    Raises:
        ValueError: naming the non-finite input tensors and rows, or the teacher and its checkpoint.
    """
    if _all_finite([logits]):
        return
    _raise_for_inputs(batch, where)
    raise ValueError(
        f"{teacher_description(module)} returned non-finite logits (nan or inf) for the finite inputs of {where}: "
        "check its weights (a diverged or wrongly loaded checkpoint) and its precision"
    )
