"""Loading trained weights into a model from a Lightning checkpoint or a plain state dict (no Lightning needed)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from torch import nn

from lightning_distill.core.safe_load import load_file

# Keys under which our LightningModules hold the deployable model.
_PREFIXES = ("model.", "student.", "")


def normalize_prefix(prefix: str) -> str:
    """``prefix`` as it starts checkpoint keys: ``backbone`` and ``backbone.`` both give ``backbone.``; ``""`` stays."""
    return prefix if not prefix or prefix.endswith(".") else f"{prefix}."


def under_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of ``state`` whose keys start with ``prefix``, with the prefix removed."""
    return {key[len(prefix) :]: value for key, value in state.items() if key.startswith(prefix)}


def top_level_prefixes(state: Mapping[str, Any]) -> dict[str, int]:
    """Each top-level prefix of ``state``'s keys (``backbone.``) with its number of keys; ``""`` for undotted keys."""
    counts: dict[str, int] = {}
    for key in state:
        prefix = key.split(".", 1)[0] + "." if "." in key else ""
        counts[prefix] = counts.get(prefix, 0) + 1
    return counts


def describe_prefixes(state: Mapping[str, Any]) -> str:
    """The top-level prefixes of ``state`` with their key counts, for error messages."""
    counts = top_level_prefixes(state)
    parts = [f"{prefix!r} ({count} keys)" for prefix, count in sorted(counts.items()) if prefix]
    if "" in counts:
        parts.append(f"{counts['']} keys without a prefix")
    return ", ".join(parts) or "none (the checkpoint holds no weights)"


def prefixes_holding(state: Mapping[str, Any], keys: Collection[str], skip: Collection[str] = ()) -> list[str]:
    """The top-level prefixes of ``state`` (``""`` too; ``skip`` not) under which its keys are exactly ``keys``."""
    wanted = set(keys)
    candidates = sorted({"", *top_level_prefixes(state)})
    return [p for p in candidates if p not in skip and under_prefix(state, p).keys() == wanted]


def load_teacher_weights(
    teacher: nn.Module,
    path: str,
    argument: str = "teacher_checkpoint",
    prefix: str | None = None,
    prefix_argument: str = "teacher_checkpoint_prefix",
) -> None:
    """Load ``path`` into ``teacher`` strictly, from our checkpoints, any LightningModule's, or a ``state_dict``.

    A Lightning checkpoint of :class:`ClassifierModule` stores the weights under ``model.``; one of
    :class:`DistillationModule` under ``student.`` (a distilled student can teach the next one). Otherwise the
    teacher's weights are found under the single top-level prefix (e.g. ``backbone.`` of a user's LightningModule)
    that holds exactly the teacher's keys; ``prefix`` names it where several do. ``argument`` and
    ``prefix_argument`` are the names the error messages give the path and the prefix (the options the user set).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the checkpoint's weights do not fit ``teacher``, or fit it under several prefixes (the message
            names the mismatch, the prefixes found and ``prefix_argument``).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{argument} {path!r} does not exist; fit a teacher first or fix the path")
    checkpoint = load_file(path, argument)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{argument} {path!r} holds no state dict (got {type(checkpoint).__name__})")
    expected, source = teacher.state_dict(), f"{argument} {path!r}"
    if prefix is not None:
        candidate = _under_given_prefix(state, expected, normalize_prefix(prefix), source, prefix_argument)
    else:
        candidate = _under_found_prefix(state, expected, source, prefix_argument)
    for key, value in candidate.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{argument} {path!r} does not fit the teacher: {key} has shape {tuple(value.shape)} in the "
                f"checkpoint but {tuple(expected[key].shape)} in the teacher (different number of classes or layer "
                "sizes?)"
            )
    teacher.load_state_dict(candidate, strict=True)


def _under_given_prefix(
    state: Mapping[str, Any], expected: Mapping[str, Any], prefix: str, source: str, prefix_argument: str
) -> dict[str, Any]:
    """The entries under ``prefix``, which must be exactly the teacher's keys."""
    candidate = under_prefix(state, prefix)
    if candidate.keys() != expected.keys():
        missing, unexpected = sorted(expected.keys() - candidate.keys()), sorted(candidate.keys() - expected.keys())
        raise ValueError(
            f"{source} does not fit the teacher under {prefix_argument}={prefix!r}: the teacher's keys missing there "
            f"are e.g. {missing[:3]} and the keys there the teacher lacks e.g. {unexpected[:3]}. Its top-level "
            f"prefixes are: {describe_prefixes(state)}. Set {prefix_argument} to the one that holds the teacher's "
            "weights, and check that the teacher is the architecture that was trained"
        )
    return candidate


def _under_found_prefix(
    state: Mapping[str, Any], expected: Mapping[str, Any], source: str, prefix_argument: str
) -> dict[str, Any]:
    """The entries under ``model.``, ``student.``, the top level, or the one other prefix holding the teacher's keys."""
    for known in _PREFIXES:
        candidate = under_prefix(state, known)
        if candidate.keys() == expected.keys():
            return candidate
    fits = prefixes_holding(state, expected.keys(), skip=_PREFIXES)
    if len(fits) == 1:
        return under_prefix(state, fits[0])
    if fits:
        raise ValueError(
            f"{source} holds the teacher's keys under several prefixes: {fits}; set {prefix_argument} to the one "
            "that holds the trained teacher"
        )
    raise ValueError(
        f"{source} does not fit the teacher: no top-level prefix of it holds exactly the teacher's keys (e.g. "
        f"{sorted(expected)[:3]}). Its top-level prefixes are: {describe_prefixes(state)}. Check that the teacher is "
        f"the architecture that was trained, and set {prefix_argument} to the prefix that holds its weights (the "
        "message then names the keys that differ)"
    )
