"""The cnn family's start from a given student checkpoint: the trained base student, pruned by L1 importance to the
trial's ``channel_sparsity`` (Torch-Pruning's dependency graph,
:func:`~lightning_distill.core.pruning.prune_structured`), whose weights the trial's fit then distil-finetunes.

Pruning first and then distilling is the cheaper correct order: every trial fits only its narrow student, and the
pruned channels are the least important ones of the trained base rather than random ones.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor, nn

from lightning_distill.core.pruning import prune_structured
from lightning_distill.core.safe_load import load_file
from lightning_distill.lightning.compress.candidate import build_student, student_spec
from lightning_distill.lightning.compress.config import CompressConfig, CompressConfigError
from lightning_distill.lightning.compress.space import CNN_BASE

# Where fit checkpoints keep the student: ClassifierModule under ``model.``, DistillationModule under ``student.``.
_PREFIXES = ("model.", "student.", "")


def base_weights(checkpoint: str | Path, model: nn.Module) -> dict[str, Tensor]:
    """``model``'s weights from ``checkpoint``: a Lightning checkpoint of a ClassifierModule or DistillationModule fit,
    or a plain ``state_dict``.

    Raises:
        CompressConfigError: no prefix of the checkpoint holds exactly ``model``'s keys and shapes.
    """
    loaded = load_file(checkpoint, "student_checkpoint")
    state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else {}
    wanted = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    for prefix in _PREFIXES:
        found = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if {k: tuple(v.shape) for k, v in found.items()} == wanted:
            return found
    raise CompressConfigError(
        f"student_checkpoint {str(checkpoint)!r} holds no weights of the base student "
        f"({type(model).__name__}, {len(wanted)} tensors) under any of the prefixes {list(_PREFIXES)}: give a "
        "checkpoint of a fit of that student (same widths), or a plain state_dict of it"
    )


def pruned_start(
    base: dict[str, Any], checkpoint: str | Path, sparsity: float, student: nn.Module, example: Any
) -> dict[str, Tensor]:
    """The trained base student, ``sparsity`` of its channels removed (L1), as the weights ``student`` starts from.

    Args:
        base: The base student's ``{class_path, init_args}`` (the config's ``student``).
        checkpoint: The base student's trained weights.
        sparsity: Fraction of every convolution's channels removed.
        student: The trial's (narrow) student, for the sizes the data module linked in and the shapes to match.
        example: A batch of model inputs, to trace the base student.
    """
    model = build_student(student_spec(base, student))
    model.load_state_dict(base_weights(checkpoint, model))
    if sparsity > 0:
        prune_structured(model.eval(), sparsity, example_inputs=example)
    weights = model.state_dict()
    expected = {k: tuple(v.shape) for k, v in student.state_dict().items()}
    if {k: tuple(v.shape) for k, v in weights.items()} != expected:
        raise CompressConfigError(
            f"pruning the base student of {str(checkpoint)!r} by {sparsity} does not give the trial's student's shapes"
        )
    return weights


def check_student_checkpoint(config: CompressConfig) -> None:
    """Refuse, before the teacher or any student is fit, a ``student_checkpoint`` that holds no weights of the base
    student (the data module is constructed, not set up, for its ``num_classes``)."""
    if config.student_checkpoint is None:
        return
    spec = config.student or CNN_BASE
    init_args = dict(spec.get("init_args") or {})
    num_classes = getattr(build_student(config.data), "num_classes", None)
    if num_classes is not None:
        init_args.setdefault("num_classes", num_classes)
    base_weights(config.student_checkpoint, build_student({"class_path": spec["class_path"], "init_args": init_args}))
