"""Loading trained weights into a model from a Lightning checkpoint or a plain state dict (no Lightning needed)."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from lightning_distill.core.safe_load import load_file

# Keys under which our LightningModules hold the deployable model.
_PREFIXES = ("model.", "student.", "")


def load_teacher_weights(teacher: nn.Module, path: str, argument: str = "teacher_checkpoint") -> None:
    """Load ``path`` into ``teacher`` strictly, accepting our checkpoints and plain ``state_dict`` files.

    A Lightning checkpoint of :class:`ClassifierModule` stores the weights under ``model.``; one of
    :class:`DistillationModule` under ``student.`` (a distilled student can teach the next one). ``argument`` is
    the name the error messages give the path (the option the user set).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the checkpoint's weights do not fit ``teacher`` (the message names the mismatch).
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{argument} {path!r} does not exist; fit a teacher first or fix the path")
    checkpoint = load_file(path, argument)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f"{argument} {path!r} holds no state dict (got {type(checkpoint).__name__})")
    expected = teacher.state_dict()
    for prefix in _PREFIXES:
        candidate = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if candidate.keys() == expected.keys():
            break
    else:
        sample = sorted(state)[:3]
        raise ValueError(
            f"{argument} {path!r} does not fit the teacher: its keys (e.g. {sample}) match neither the "
            f"teacher's keys (e.g. {sorted(expected)[:3]}) nor those under 'model.' or 'student.'; check that the "
            "teacher in the config is the architecture that was trained"
        )
    for key, value in candidate.items():
        if value.shape != expected[key].shape:
            raise ValueError(
                f"{argument} {path!r} does not fit the teacher: {key} has shape {tuple(value.shape)} in the "
                f"checkpoint but {tuple(expected[key].shape)} in the teacher (different number of classes or layer "
                "sizes?)"
            )
    teacher.load_state_dict(candidate, strict=True)
