"""What a text recipe trains and measures: the frozen settings, the command-line options that fill them, and the
settings each step's results depend on."""

from __future__ import annotations

import argparse
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lightning_distill.core.models.dropout import check_dropout

__all__ = ["STEP_OPTIONS", "TextRecipeSettings", "add_common_options", "common_settings", "step_options"]


@dataclass(frozen=True)
class TextRecipeSettings:
    """What a text recipe trains and measures; recorded in the report, and by each step the settings it depends on.

    Args:
        configs: Folder with ``teacher.yaml`` and ``distill.yaml``.
        title: Title of the report.
        data: Data-module arguments overriding the configs' (``data_files``, ``dataset``, ...), the tokenizer excluded.
        tokenizer: The student's tokenizer (Hub name or folder).
        teacher_tokenizer: The teacher's tokenizer where the teacher's folder holds none; None: ``tokenizer``.
        teacher: A fine-tuned teacher: ``save_pretrained`` folder, Lightning checkpoint of ``teacher.yaml``, or Hub
            name; None fits ``teacher.yaml`` on ``teacher_base``.
        teacher_base: Checkpoint ``teacher.yaml`` fine-tunes (and builds to load a Lightning checkpoint).
        student_base: Checkpoint the student is built from; None: the fine-tuned teacher (its layers and trained head,
            rather than those of the pretrained encoder).
        student_layers: Layers of ``student_base`` the student keeps (``StudentFromTeacher``); None keeps the config's.
        prune: Run the structured pruning step.
        sparsity: Fraction of every layer's attention heads and FFN neurons that pruning removes.
        teacher_epochs: Epochs of the teacher fit; None keeps the config's.
        epochs: Epochs of distillation; None keeps the config's.
        prune_epochs: Epochs of the pruning fit (with the teacher's soft targets): units are removed in the first half,
            the second half fine-tunes the pruned student.
        prune_importance: How the prune step scores heads and FFN neurons: ``"taylor"`` (first-order loss change,
            gathered on the training batches) or ``"l1"`` (weight norms).
        offset_class: Label of a reject class (CLINC150: ``oos``) whose logit the offset step offsets in every
            student, so that on the validation texts it predicts the class as often as the teacher
            (:func:`~lightning_distill.core.models.class_logit_offset`); None: no offset step.
        prune_teacher: Whose soft targets the prune step learns: ``"teacher"`` (the fine-tuned teacher) or
            ``"student"`` (the distilled student before pruning, as CoFi pruning distils from the unpruned model).
        limit_train_batches: Trainer's ``limit_train_batches`` of every fit (fraction or batch count); None: all.
        limit_val_batches: Trainer's ``limit_val_batches`` of every fit; None: all.
        test_limit: Benchmark accuracy on the first ``test_limit`` test texts only; None: all.
        bench_threads: Intra-op threads of every latency measurement.
        bench_iterations: Timed batch-1 calls per artifact.
        teacher_dropout: Dropout of the teacher fit (``ClassifierModule(dropout=...)``); None keeps the config's.
        dropout: Dropout of the student in the distill and prune fits (``DistillationModule(dropout=...)``); None
            keeps the config's.
        seed: ``seed_everything`` of every fit (teacher, distill, prune); None keeps the configs' (0).
        target_speedup: The least speed-up (batch-1 p50 latency) over the fp32 teacher the final artifact should
            reach; None: no speed target.
        target_size_fraction: The largest fraction of the teacher's size the final artifact may take (0.125: 8x
            smaller); None: no size target.
        target_accuracy_drop: The most accuracy, in points, the final artifact may lose against the teacher; None: no
            accuracy target. The report checks every candidate against the targets given, and the final artifact is
            the first (most compressed) candidate that meets them all; with none given, the most compressed one.
        command: The command line that ran the recipe, shown in the report (not compared).
    """

    configs: str
    title: str
    data: dict[str, Any]
    tokenizer: str
    teacher: str | None
    teacher_base: str | None
    student_base: str | None
    teacher_tokenizer: str | None = None
    student_layers: list[int] | None = None
    prune: bool = True
    sparsity: float = 0.5
    teacher_epochs: int | None = None
    epochs: int | None = None
    prune_epochs: int = 8
    prune_importance: str = "taylor"
    prune_teacher: str = "teacher"
    offset_class: str | None = None
    limit_train_batches: float | None = None
    limit_val_batches: float | None = None
    test_limit: int | None = None
    bench_threads: int = 1
    bench_iterations: int = 100
    teacher_dropout: float | None = None
    dropout: float | None = None
    seed: int | None = None
    target_speedup: float | None = None
    target_size_fraction: float | None = None
    target_accuracy_drop: float | None = None
    command: list[str] = field(default_factory=list, compare=False)

    def __post_init__(self) -> None:
        if not 0.0 < self.sparsity < 1.0:
            raise ValueError(f"sparsity must be in (0, 1), got {self.sparsity}")
        if self.prune_importance not in ("taylor", "l1"):
            raise ValueError(f"prune_importance must be 'taylor' or 'l1', got {self.prune_importance!r}")
        if self.prune_teacher not in ("teacher", "student"):
            raise ValueError(f"prune_teacher must be 'teacher' or 'student', got {self.prune_teacher!r}")
        if self.offset_class is not None and not self.offset_class.strip():
            raise ValueError("offset_class is an empty label: give the reject class's label (e.g. 'oos') or None")
        if self.teacher is None and self.teacher_base is None:
            raise ValueError("give a fine-tuned teacher, or a teacher_base for the teacher fit")
        for name in ("teacher_epochs", "epochs", "prune_epochs", "test_limit", "bench_threads", "bench_iterations"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        for name in ("limit_train_batches", "limit_val_batches"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be > 0 (a fraction of the batches, or a count), got {value}")
        if self.seed is not None and not 0 <= self.seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {self.seed}")
        if self.target_speedup is not None and not self.target_speedup > 0:
            raise ValueError(f"target_speedup must be > 0 (e.g. 8 for 8x faster), got {self.target_speedup}")
        if self.target_size_fraction is not None and not 0 < self.target_size_fraction <= 1:
            raise ValueError(
                f"target_size_fraction must be in (0, 1] (e.g. 0.125 for 8x smaller), got {self.target_size_fraction}"
            )
        if self.target_accuracy_drop is not None and not self.target_accuracy_drop >= 0:
            raise ValueError(f"target_accuracy_drop must be >= 0 points, got {self.target_accuracy_drop}")
        for name in ("teacher_dropout", "dropout"):  # before any fit, rather than when the fit builds its module
            check_dropout(getattr(self, name), name)


class _Deprecated(argparse.Action):
    """A renamed option that still works for one release, with a warning naming its new name."""

    def __init__(self, option_strings: list[str], dest: str, new: str, **kwargs: Any) -> None:
        self.new = new
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any, option: str | None = None
    ) -> None:
        warnings.warn(f"{option} is now {self.new}; the old name will be removed in 0.3", FutureWarning, stacklevel=2)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)


def _add_deprecated_flags(parser: argparse.ArgumentParser) -> None:
    """The reject-class offset's options under their names before 0.2 (the step was called calibrate)."""
    parser.add_argument(
        "--calibrate-class",  # rewrite_imports: keep
        action=_Deprecated,
        new="--offset-class",
        dest="offset_class",
        metavar="LABEL",
        help=argparse.SUPPRESS,
    )
    parser.add_argument(
        "--no-calibrate",  # rewrite_imports: keep
        action=_Deprecated,
        new="--no-offset",
        dest="offset_class",
        nargs=0,
        const=None,
        help=argparse.SUPPRESS,
    )


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """The options both CLINC recipes share: pruning, epochs, CPU-time bounds and benchmark settings."""
    parser.add_argument("--runs", default="runs", help="folder of all recipe runs (default: runs)")
    parser.add_argument("--no-prune", dest="prune", action="store_false", help="skip the structured pruning step")
    parser.add_argument("--prune", dest="prune", action="store_true", help="prune the student (default)")
    parser.add_argument("--sparsity", type=float, default=0.5, help="heads and FFN neurons pruned (default 0.5)")
    parser.add_argument("--teacher-epochs", type=int, help="epochs of the teacher fit (default: the config's)")
    parser.add_argument("--epochs", type=int, help="epochs of distillation (default: the config's)")
    parser.add_argument(
        "--prune-epochs", type=int, default=8, help="epochs of the pruning fit: prune in the first half (default 8)"
    )
    parser.add_argument(
        "--prune-importance",
        choices=["taylor", "l1"],
        default="taylor",
        help="scores of the heads and FFN neurons the prune step removes (default taylor)",
    )
    parser.add_argument(
        "--prune-teacher",
        choices=["teacher", "student"],
        default="teacher",
        help="soft targets of the prune step: the teacher's (default) or the unpruned distilled student's",
    )
    parser.add_argument(
        "--offset-class",
        metavar="LABEL",
        help="reject class whose logit each student offsets to predict it as often as the teacher on the validation "
        "texts (offset step; CLINC150: oos)",
    )
    parser.add_argument(
        "--no-offset", dest="offset_class", action="store_const", const=None, help="skip the offset step"
    )
    _add_deprecated_flags(parser)
    parser.add_argument(
        "--limit-train-batches", type=_fraction_or_count, help="per fit: a fraction (0.25) or a count (100) of batches"
    )
    parser.add_argument("--limit-val-batches", type=_fraction_or_count, help="per fit, as --limit-train-batches")
    parser.add_argument("--test-limit", type=int, help="benchmark accuracy on the first N test texts (default: all)")
    parser.add_argument("--bench-threads", type=int, default=1, help="threads of the latency measurement (default 1)")
    parser.add_argument("--bench-iterations", type=int, default=100, help="timed batch-1 calls per artifact")
    parser.add_argument("--teacher-dropout", type=float, help="dropout of the teacher fit (default: the config's)")
    parser.add_argument("--dropout", type=float, help="dropout of the student while distilled (default: the config's)")
    parser.add_argument("--seed", type=int, help="seed_everything of every fit (default: the configs', 0)")
    parser.add_argument(
        "--target-speedup", type=float, metavar="X", help="report: least speed-up over the teacher (default: none)"
    )
    parser.add_argument(
        "--target-size-fraction",
        type=float,
        metavar="F",
        help="report: largest fraction of the teacher's size, e.g. 0.125 (default: none)",
    )
    parser.add_argument(
        "--target-accuracy-drop",
        type=float,
        metavar="POINTS",
        help="report: most accuracy points lost against the teacher (default: none)",
    )


_COMMON = (
    "prune",
    "sparsity",
    "teacher_epochs",
    "epochs",
    "prune_epochs",
    "prune_importance",
    "prune_teacher",
    "offset_class",
    "limit_train_batches",
    "limit_val_batches",
    "test_limit",
    "bench_threads",
    "bench_iterations",
    "teacher_dropout",
    "dropout",
    "seed",
    "target_speedup",
    "target_size_fraction",
    "target_accuracy_drop",
)


def common_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The :class:`TextRecipeSettings` fields read from the options :func:`add_common_options` added."""
    return {name: getattr(args, name) for name in _COMMON}


def _fraction_or_count(text: str) -> float | int:
    value = float(text)
    return int(value) if value.is_integer() and value > 1 else value


# The settings each step's results depend on, recorded in its done.json: a change of one redoes that step and every
# later one. The report depends on every setting (it lists them).
_FIT = ("data", "tokenizer", "teacher_tokenizer", "limit_train_batches", "limit_val_batches")
STEP_OPTIONS = {
    "teacher": (*_FIT, "teacher", "teacher_base", "teacher_epochs", "teacher_dropout", "seed"),
    "distill": (*_FIT, "student_base", "student_layers", "epochs", "dropout", "seed"),
    "prune": (*_FIT, "sparsity", "prune_epochs", "prune_importance", "prune_teacher", "dropout", "seed"),
    "offset": ("data", "tokenizer", "teacher_tokenizer", "prune", "offset_class"),
    "quantize": ("prune",),
    "export": ("data", "prune"),
    "benchmark": ("data", "tokenizer", "teacher_tokenizer", "prune", "test_limit", "bench_threads", "bench_iterations"),
}


def step_options(settings: TextRecipeSettings, step: str) -> dict[str, Any]:
    """The settings ``step``'s results depend on (see :data:`STEP_OPTIONS`)."""
    if step == "report":
        return {k: v for k, v in asdict(settings).items() if k != "command"}
    names = STEP_OPTIONS[step]
    if step == "teacher" and settings.teacher is not None:  # no fit: its epochs, dropout and limits do not count
        is_folder = Path(settings.teacher).is_dir()
        names = ("teacher",) if is_folder else ("teacher", "teacher_base", "data", "tokenizer", "teacher_tokenizer")
    return {name: getattr(settings, name) for name in names}
