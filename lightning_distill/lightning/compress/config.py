"""What ``lightning-distill compress`` searches, under which budget, and where it writes: dataclasses from YAML."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lightning_distill.lightning.tuning.config import refuse_unknown_keys


class CompressConfigError(ValueError):
    """A compress config, its budget or its search space is wrong; the message names the key and what is allowed."""


def _number(where: str, value: Any, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise CompressConfigError(f"{where} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise CompressConfigError(f"{where} must be > 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Budget:
    """What the chosen model must meet; every limit is optional, and a trial meets the budget when it meets all given.

    Latency is the p50 of batch-1 queries on this machine with one thread, measured through the data module's
    ``encode`` (so input conversion or tokenization is included); size is the artifact's size on disk.

    Args:
        latency_ms: Largest p50 latency per query, in milliseconds.
        latency_ratio: Smallest speed-up over the fp32 teacher (teacher p50 / candidate p50), e.g. 10 for 10x faster.
        size_mb: Largest artifact size in MB (10^6 bytes).
        size_ratio: Largest size relative to the fp32 teacher's graph (candidate / teacher), e.g. 0.05 for 1/20.
        min_accuracy: Lowest validation accuracy, as a fraction in (0, 1].
        max_drop_points: Largest drop of validation accuracy below the teacher's, in percentage points.
    """

    latency_ms: float | None = None
    latency_ratio: float | None = None
    size_mb: float | None = None
    size_ratio: float | None = None
    min_accuracy: float | None = None
    max_drop_points: float | None = None

    def __post_init__(self) -> None:
        for item in dataclasses.fields(self):
            value = getattr(self, item.name)
            if value is not None:
                object.__setattr__(self, item.name, _number(f"budget.{item.name}", value, positive=True))
        if self.min_accuracy is not None and self.min_accuracy > 1:
            raise CompressConfigError(
                f"budget.min_accuracy is a fraction in (0, 1], got {self.min_accuracy}; for points below the teacher "
                "use max_drop_points"
            )

    def limits(self) -> dict[str, float]:
        """The limits that are set, by name."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class Dimension:
    """One searched dimension: a list of ``choices``, or a range ``low``..``high`` (integers when both are ints).

    Args:
        name: The dimension's name, one the model family provides (``hidden_width``, ``temperature``, ``int8``...).
        choices: The values to choose from (numbers or strings); exclusive with ``low``/``high``.
        low: Smallest value of a range (inclusive).
        high: Largest value of a range (inclusive).
        log: Sample the range in log space; needs ``low > 0``.
    """

    name: str
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False

    def __post_init__(self) -> None:
        where = f"search_space.{self.name}"
        if self.choices is not None:
            if self.low is not None or self.high is not None:
                raise CompressConfigError(f"{where}: give either a list of choices or low/high, not both")
            if isinstance(self.choices, str) or not isinstance(self.choices, list | tuple) or not self.choices:
                raise CompressConfigError(f"{where}: choices must be a non-empty list, got {self.choices!r}")
            object.__setattr__(self, "choices", tuple(self.choices))
            return
        if self.low is None or self.high is None:
            raise CompressConfigError(f"{where}: a range needs both low and high, or give a list of choices")
        low = _number(f"{where}.low", self.low, positive=False)
        high = _number(f"{where}.high", self.high, positive=False)
        if low >= high:
            raise CompressConfigError(f"{where}: empty range, low ({low}) must be smaller than high ({high})")
        if self.log and low <= 0:
            raise CompressConfigError(f"{where}: log: true needs low > 0, got {low}")

    @property
    def is_int(self) -> bool:
        """A range whose ends are both integers is sampled as integers."""
        return self.choices is None and isinstance(self.low, int) and isinstance(self.high, int)

    def values(self) -> tuple[Any, ...]:
        """The values a family checks: every choice, or both ends of the range."""
        return self.choices if self.choices is not None else (self.low, self.high)


@dataclass(frozen=True)
class Trials:
    """How long the search runs: it stops at whichever comes first.

    Args:
        n_trials: Completed trials the study should hold; trials of an earlier, stopped search count.
        timeout_s: Wall-clock seconds this run may start new trials for; None for no limit.
    """

    n_trials: int = 20
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.n_trials, bool) or not isinstance(self.n_trials, int) or self.n_trials < 1:
            raise CompressConfigError(f"trials.n_trials must be an integer >= 1, got {self.n_trials!r}")
        if self.timeout_s is not None:
            object.__setattr__(self, "timeout_s", _number("trials.timeout_s", self.timeout_s))


@dataclass(frozen=True)
class Teacher:
    """The teacher: a LightningCLI fit config of a ``ClassifierModule``, fit once by the search unless ``checkpoint``.

    Args:
        config: The teacher's fit config (e.g. ``configs/digits/teacher.yaml``): its ``model.init_args.model`` is the
            teacher's architecture.
        checkpoint: A checkpoint of that config's fit; None fits the teacher once into ``<output_dir>/teacher``.
    """

    config: str
    checkpoint: str | None = None


@dataclass(frozen=True)
class CompressConfig:
    """A ``compress`` search: the teacher, the data, the student family, its search space, the budget, the trials.

    Relative paths are taken from the working directory, like every path in the configs.

    Args:
        teacher: The teacher (see :class:`Teacher`).
        data: The data module as in the fit configs: ``{class_path: ..., init_args: {...}}``.
        family: The student family whose dimensions ``search_space`` names: ``mlp`` or ``cnn``.
        student: The cnn family's base student, ``{class_path, init_args}`` with ``widths`` (channels per stage) that
            ``channel_sparsity`` narrows; None: SmallCNN with widths [32, 64, 128]. Not used by the mlp family.
        student_checkpoint: The cnn family only: trained weights of ``student`` (a fit checkpoint or a plain
            ``state_dict``). Each trial then starts from this student pruned to its ``channel_sparsity`` (L1,
            Torch-Pruning) and distil-finetunes it; None: each trial distils the narrowed student from random weights.
        search_space: Dimensions by name (see :class:`Dimension`); dimensions not named keep the family's defaults.
        budget: The limits the chosen model must meet (see :class:`Budget`).
        trials: Trial count and wall time (see :class:`Trials`).
        max_epochs: Epochs of each student's distillation fit.
        limit_train_batches: Training batches per epoch of each student's fit (a smoke run); None: all of them.
        seed: Seed of the fits and of the sampler (offset by the trials already in the study on resume).
        output_dir: Folder of the study (``study.db``), the trials, the teacher, the front files and ``chosen/``.
        query_sample: Validation examples whose batch-1 latency the search measures (the same ones every trial).
        latency_turns: Interleaved turns of candidate and teacher per latency measurement.
        fit_threads: PyTorch intra-op threads of the teacher's and the students' fits; None keeps PyTorch's default
            (all cores). Tiny models train several times faster on one thread than on two contended ones.
    """

    teacher: Teacher
    data: dict[str, Any]
    family: str = "mlp"
    student: dict[str, Any] | None = None
    student_checkpoint: str | None = None
    search_space: dict[str, Dimension] = field(default_factory=dict)
    budget: Budget = field(default_factory=Budget)
    trials: Trials = field(default_factory=Trials)
    max_epochs: int = 10
    limit_train_batches: int | None = None
    seed: int = 0
    output_dir: str = "runs/compress"
    query_sample: int = 64
    latency_turns: int = 5
    fit_threads: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.data, dict) or not isinstance(self.data.get("class_path"), str):
            raise CompressConfigError(
                f"data must be a mapping with class_path (and init_args), as in the fit configs; got {self.data!r}"
            )
        for name in ("max_epochs", "query_sample", "latency_turns"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CompressConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if self.student is not None and (
            not isinstance(self.student, dict) or not isinstance(self.student.get("class_path"), str)
        ):
            raise CompressConfigError(f"student must be a mapping with class_path and init_args, got {self.student!r}")
        if self.student_checkpoint is not None:
            if self.family != "cnn":
                raise CompressConfigError(
                    f"student_checkpoint is for the cnn family (a trained student to prune), not {self.family!r}"
                )
            if not Path(self.student_checkpoint).is_file():
                raise CompressConfigError(f"student_checkpoint {self.student_checkpoint!r} does not exist")
        for name in ("fit_threads", "limit_train_batches"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise CompressConfigError(f"{name} must be an integer >= 1 or null, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise CompressConfigError(f"seed must be an integer >= 0, got {self.seed!r}")

    @property
    def output(self) -> Path:
        """``output_dir`` as a path."""
        return Path(self.output_dir)

    def replace(self, **changes: Any) -> CompressConfig:
        """A copy with ``changes``, validated again."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, spec: Any, source: str = "the compress config") -> CompressConfig:
        """Build from a parsed YAML mapping; unknown keys, at the top or in a section, are refused by name."""
        try:
            return cls(**_sections(_known(spec, cls, source)))
        except CompressConfigError as error:
            raise CompressConfigError(f"{source}: {error}") from None
        except TypeError as error:  # a section given a key its dataclass does not take, caught in _known first
            raise CompressConfigError(f"{source}: {error}") from None


def _known(spec: Any, kind: type, where: str) -> dict[str, Any]:
    if not isinstance(spec, dict):
        raise CompressConfigError(f"{where} must be a mapping, got {spec!r}")
    refuse_unknown_keys(spec, kind, where, CompressConfigError)
    return spec


def _sections(spec: dict[str, Any]) -> dict[str, Any]:
    values = dict(spec)
    if "teacher" not in values or "data" not in values:
        raise CompressConfigError("teacher (config, and optionally checkpoint) and data (class_path) are required")
    values["teacher"] = Teacher(**_known(values["teacher"], Teacher, "teacher"))
    values["budget"] = Budget(**_known(values.get("budget") or {}, Budget, "budget"))
    values["trials"] = Trials(**_known(values.get("trials") or {}, Trials, "trials"))
    space = values.get("search_space") or {}
    if not isinstance(space, dict):
        raise CompressConfigError(f"search_space must map dimension names to choices or ranges, got {space!r}")
    values["search_space"] = {name: _dimension(name, entry) for name, entry in space.items()}
    return values


def _dimension(name: str, entry: Any) -> Dimension:
    if isinstance(entry, list):
        return Dimension(name=name, choices=tuple(entry))
    if isinstance(entry, dict):
        unknown = sorted(set(entry) - {"low", "high", "log", "choices"})
        if unknown:
            raise CompressConfigError(f"search_space.{name}: unknown keys {unknown}; allowed: choices, low, high, log")
        return Dimension(name=name, **entry)
    return Dimension(name=name, choices=(entry,))  # one fixed value


def load_compress_config(path: str | Path, **changes: Any) -> CompressConfig:
    """Read a compress YAML; ``changes`` that are not None replace top-level values, and ``n_trials``/``timeout_s``
    those of ``trials`` (command-line overrides).

    Raises:
        CompressConfigError: the file is missing or a value is wrong (named).
    """
    path = Path(path)
    if not path.is_file():
        raise CompressConfigError(f"compress config {str(path)!r} does not exist")
    config = CompressConfig.from_dict(yaml.safe_load(path.read_text()), source=str(path))
    changes = {k: v for k, v in changes.items() if v is not None}
    trial_changes = {k: changes.pop(k) for k in ("n_trials", "timeout_s") if k in changes}
    if trial_changes:
        changes["trials"] = dataclasses.replace(config.trials, **trial_changes)
    return config.replace(**changes) if changes else config
