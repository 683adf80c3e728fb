"""The dimensions each student family provides, checked before any training, and sampled per trial.

A family turns a trial's values (and the config's base ``student``) into the student's ``class_path``/``init_args`` for
the distillation fit. Every family also takes the common dimensions: the distillation temperature, the soft-target
weight, the learning rate and the int8 scheme of the exported artifact.
"""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lightning_distill.lightning.compress.config import CompressConfigError, Dimension

# The int8 schemes of a candidate artifact: none (the export folder's fp32 ONNX graph), ONNX Runtime dynamic or static
# (QDQ, calibrated on validation inputs) int8 of that graph (the folder's model_quantized.onnx; static is what
# convolutions need, dynamic suits Linear-only models), torchao dynamic int8 of the PyTorch model (core.quantization,
# engine='torchao': its Linear layers).
INT8_SCHEMES = ("none", "ort_dynamic", "ort_static", "torchao_dynamic")


def _positive(value: Any) -> str | None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and value > 0
    return None if ok else "a number > 0"


def _fraction(value: Any) -> str | None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value <= 1
    return None if ok else "a number in [0, 1]"


def _count(minimum: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        ok = not isinstance(value, bool) and isinstance(value, int) and value >= minimum
        return None if ok else f"an integer >= {minimum}"

    return check


def _int8(value: Any) -> str | None:
    if value not in INT8_SCHEMES:
        return f"one of {list(INT8_SCHEMES)}"
    if value == "torchao_dynamic" and importlib.util.find_spec("torchao") is None:
        return "installed: torchao_dynamic needs the [torchao] extra (pip install torchao), or leave it out"
    return None


@dataclass(frozen=True)
class DimensionSpec:
    """A dimension a family provides.

    Args:
        default: Its value in trials whose search space does not name it.
        check: Returns None for an allowed value, else what is allowed.
        help: One line on what it changes.
    """

    default: Any
    check: Callable[[Any], str | None]
    help: str


COMMON_DIMENSIONS: dict[str, DimensionSpec] = {
    "temperature": DimensionSpec(4.0, _positive, "KD temperature of the soft targets (KDLoss)"),
    "soft_target_weight": DimensionSpec(0.5, _fraction, "weight of the teacher's soft targets; labels get the rest"),
    "learning_rate": DimensionSpec(3e-3, _positive, "the student's learning rate"),
    "int8": DimensionSpec("none", _int8, f"int8 scheme of the artifact, one of {list(INT8_SCHEMES)}"),
}


@dataclass(frozen=True)
class Family:
    """A student family: its own dimensions and how a trial's values become the student's config.

    Args:
        name: The ``family`` key of the compress config.
        dimensions: The family's own dimensions (the common ones are added).
        student: Trial values (all dimensions) and the config's base ``student`` (or None) -> the student's
            ``{class_path, init_args}`` for the fit config.
    """

    name: str
    dimensions: dict[str, DimensionSpec]
    student: Callable[[dict[str, Any], dict[str, Any] | None], dict[str, Any]]

    @property
    def all_dimensions(self) -> dict[str, DimensionSpec]:
        """The family's dimensions and the common ones."""
        return {**self.dimensions, **COMMON_DIMENSIONS}

    def values(self, searched: dict[str, Any]) -> dict[str, Any]:
        """Every dimension's value in a trial: the searched ones, the defaults for the rest."""
        return {name: searched.get(name, spec.default) for name, spec in self.all_dimensions.items()}


def _mlp_student(values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    sizes = [int(values["hidden_width"])] * int(values["hidden_layers"])
    return {"class_path": "lightning_distill.core.models.MLP", "init_args": {"hidden_sizes": sizes}}


MLP_FAMILY = Family(
    name="mlp",
    dimensions={
        "hidden_layers": DimensionSpec(1, _count(0), "number of hidden layers of the MLP student (0: linear)"),
        "hidden_width": DimensionSpec(32, _count(1), "width of every hidden layer"),
    },
    student=_mlp_student,
)

# The cnn family's student when the config names none: configs/mnist_cnn/student.yaml's SmallCNN.
CNN_BASE = {"class_path": "lightning_distill.core.models.SmallCNN", "init_args": {"widths": [32, 64, 128]}}


def _sparsity(value: Any) -> str | None:
    ok = not isinstance(value, bool) and isinstance(value, int | float) and 0 <= value < 1
    return None if ok else "a number in [0, 1): the fraction of each convolution's channels removed"


def pruned_widths(widths: list[int], sparsity: float) -> list[int]:
    """Channels kept per stage when ``sparsity`` of each stage's channels is removed (at least one per stage), rounded
    as :func:`~lightning_distill.core.pruning.structured.units_to_keep` rounds them."""
    return [max(1, int(w) - round(float(sparsity) * int(w))) for w in widths]


def _cnn_student(values: dict[str, Any], base: dict[str, Any] | None = None) -> dict[str, Any]:
    base = base or CNN_BASE
    init_args = dict(base.get("init_args") or {})
    widths = init_args.get("widths", CNN_BASE["init_args"]["widths"])
    init_args["widths"] = pruned_widths(widths, values["channel_sparsity"])
    return {"class_path": base["class_path"], "init_args": init_args}


CNN_FAMILY = Family(
    name="cnn",
    dimensions={
        "channel_sparsity": DimensionSpec(
            0.5, _sparsity, "fraction of every stage's channels removed from the base student's widths"
        ),
    },
    student=_cnn_student,
)

FAMILIES: dict[str, Family] = {"mlp": MLP_FAMILY, "cnn": CNN_FAMILY}


def family(name: str) -> Family:
    """The family called ``name``; an unknown one is refused with the known ones."""
    if name not in FAMILIES:
        close = difflib.get_close_matches(name, list(FAMILIES), n=3, cutoff=0.5)
        hint = f"; did you mean {close}?" if close else ""
        raise CompressConfigError(f"family {name!r} is not one of the student families {sorted(FAMILIES)}{hint}")
    return FAMILIES[name]


def check_search_space(family_name: str, space: dict[str, Dimension], student: dict[str, Any] | None = None) -> Family:
    """Refuse, before any training, a dimension the family does not provide (with close names), values a
    dimension does not allow, and a base ``student`` the family cannot narrow. Returns the family.

    Raises:
        CompressConfigError: naming the dimension and what the family provides or the dimension allows.
    """
    chosen = family(family_name)
    provided = chosen.all_dimensions
    for name, dimension in space.items():
        if name not in provided:
            close = difflib.get_close_matches(name, list(provided), n=3, cutoff=0.5)
            hint = f"; did you mean {close}?" if close else ""
            raise CompressConfigError(
                f"search_space names {name!r}, a dimension the {chosen.name!r} family does not provide (it provides "
                f"{', '.join(sorted(provided))}){hint}"
            )
        if dimension.choices is None and name == "int8":
            raise CompressConfigError(f"search_space.int8 takes a list of choices from {list(INT8_SCHEMES)}")
        for value in dimension.values():
            problem = provided[name].check(value)
            if problem:
                raise CompressConfigError(f"search_space.{name}: {value!r} is not allowed; it must be {problem}")
    if student is not None and chosen.name == "cnn":
        widths = (student.get("init_args") or {}).get("widths")
        if not isinstance(widths, list | tuple) or not widths or not all(isinstance(w, int) and w > 0 for w in widths):
            raise CompressConfigError(
                f"student.init_args.widths must list the channels of each stage (e.g. SmallCNN's [32, 64, 128]) for "
                f"the cnn family to narrow them by channel_sparsity; got {widths!r}"
            )
    elif student is not None and chosen.name == "mlp":
        raise CompressConfigError("student is for the cnn family's base model; the mlp family builds its own MLPs")
    return chosen


def suggest(trial: Any, space: dict[str, Dimension]) -> dict[str, Any]:
    """The searched values of an Optuna ``trial``, by dimension name."""
    values: dict[str, Any] = {}
    for name, dimension in space.items():
        if dimension.choices is not None:
            values[name] = trial.suggest_categorical(name, list(dimension.choices))
        elif dimension.is_int:
            values[name] = trial.suggest_int(name, int(dimension.low), int(dimension.high), log=dimension.log)
        else:
            values[name] = trial.suggest_float(name, float(dimension.low), float(dimension.high), log=dimension.log)
    return values
