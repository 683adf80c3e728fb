"""Capturing the outputs of named submodules during one forward pass, with forward hooks that never outlive it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import Tensor, nn


def _first_tensor(output: Any) -> Tensor | None:
    """A module's output tensor: itself, or the first tensor of a tuple/list (Hugging Face layers return tuples)."""
    if isinstance(output, Tensor):
        return output
    if hasattr(output, "to_tuple"):  # a Hugging Face ModelOutput
        output = output.to_tuple()
    if isinstance(output, tuple | list):
        return next((item for item in output if isinstance(item, Tensor)), None)
    return None


@contextmanager
def capture_outputs(model: nn.Module, names: Iterable[str]) -> Iterator[dict[str, list[Any]]]:
    """Record the outputs of ``model``'s modules ``names`` while the block runs; the hooks are removed on exit.

    Each output is cloned as it is produced, so a later in-place layer (``ReLU(inplace=True)`` after a BatchNorm)
    cannot change what was captured; gradients flow through the clone as through the output. Read the captures with
    :func:`captured_output`, which checks that each module ran exactly once.
    """
    modules = dict(model.named_modules())
    outputs: dict[str, list[Any]] = {}
    handles = []
    try:
        for name in dict.fromkeys(names):
            outputs[name] = []

            def keep(module: nn.Module, args: Any, output: Any, store: list[Any] = outputs[name]) -> None:
                tensor = _first_tensor(output)
                store.append(tensor.clone() if tensor is not None else output)

            handles.append(modules[name].register_forward_hook(keep))
        yield outputs
    finally:
        for handle in handles:
            handle.remove()


def captured_output(outputs: dict[str, list[Any]], name: str, side: str) -> Tensor:
    """The one tensor module ``name`` of the ``side`` model produced in the forward pass.

    Raises:
        ValueError: the module did not run, ran more than once (a shared module such as torchvision's ``relu`` in a
            ResNet block), or returned no tensor.
    """
    calls = outputs[name]
    if not calls:
        raise ValueError(
            f"the {side}'s module {name!r} did not run in its forward pass, so it has no feature to distil; name a "
            "module the forward pass uses"
        )
    if len(calls) > 1:
        raise ValueError(
            f"the {side}'s module {name!r} ran {len(calls)} times in one forward pass (a module reused inside the "
            "model), so its output is ambiguous; name a module that runs once, e.g. the block that contains it"
        )
    if not isinstance(calls[0], Tensor):
        raise ValueError(
            f"the {side}'s module {name!r} returned {type(calls[0]).__name__}, which holds no tensor to distil; name "
            "a module that returns a tensor"
        )
    return calls[0]
