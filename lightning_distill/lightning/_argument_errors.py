"""jsonargparse's parse errors, which nest one block per config level (``Parser key``, ``Subtypes``, ``Errors``,
``Given value``), told as the option's full name and what was wrong with it, on one line."""

from __future__ import annotations

import importlib
import re

__all__ = ["condense_argument_error"]

_KEY = re.compile(r'Parser key "([^"]+)":')
_UNKNOWN_CLASS = re.compile(r"Expected a dot import path string: (\S+)")
_SUBTYPES = re.compile(r"Subtypes: \[(.*)\]")
_CLASS = re.compile(r"<class '([\w.]+)'>|list\[([\w.]+)\]")
_TYPE_NAME = re.compile(r"<class '(?:[\w]+\.)*(\w+)'>")
_GIVEN = re.compile(r"Given value: (.*)")
_CLASS_PATH = re.compile(r"class_path='([\w.]+)'")
# Lines that only say how jsonargparse tried the value, not what was wrong with it.
_NOISE = re.compile(
    r"Does not validate against any of the Union subtypes|Subtypes: |Errors:$|Given value type: |Given value: |"
    r"Expected a <class 'NoneType'>$|Problem with given class_path |Expected a path but .* either not accessible"
)


def condense_argument_error(message: str) -> str:
    """``message`` of a jsonargparse ``ArgumentError`` as ``--OPTION: what was wrong``; a message of another shape
    is returned as it is.

    ``Parser key "model" ... Parser key "loss" ... Parser key "temperature": Expected a <class 'float'>. Got value:
    hot`` becomes ``--model.loss.temperature: expected float. Got value: hot``.
    """
    keys = _KEY.findall(message)
    if not keys and "Does not validate against any of the Union subtypes" not in message:
        return message
    class_path = _CLASS_PATH.search(message)  # a class that refused its arguments when it was built: no key
    option = "--" + ".".join(keys) if keys else class_path.group(1) if class_path else "config"
    unknown = _UNKNOWN_CLASS.search(message)
    if unknown:
        return _unknown_class(option, unknown.group(1), message if len(keys) == 1 else "")
    reasons: list[str] = []
    for line in message.splitlines():
        text = _KEY.sub("", line).strip().lstrip("-").strip()
        if text and not _NOISE.match(text) and text not in reasons:
            reasons.append(_TYPE_NAME.sub(r"\1", text))
    given = _GIVEN.search(message)
    if keys and given and "NestedArg(" not in given.group(1) and "Got value" not in " ".join(reasons):
        reasons.append(f"got {given.group(1).strip()}")
    reasons = [re.sub(r"^Expected (a |an )?", "expected ", reason) for reason in reasons]
    return f"{option}: {'; '.join(reasons) or message.strip()}"


def _unknown_class(option: str, name: str, message: str) -> str:
    """The error of a class name that matches no imported class, with the short names lightning-distill offers."""
    text = (
        f"{option}: no class named {name!r} is known; give a full import path (package.module.ClassName)"
        " or a short name"
    )
    names = _short_names(message)
    return f"{text} such as {', '.join(names)}" if names else text


def _short_names(message: str) -> list[str]:
    """The public lightning-distill subclasses of the first class the message's ``Subtypes`` names."""
    subtypes = _SUBTYPES.search(message)
    paths = [a or b for a, b in _CLASS.findall(subtypes.group(1))] if subtypes else []
    base = next((path for path in paths if path != "NoneType"), None)
    if base is None or "." not in base:
        return []
    module, _, name = base.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return []
    found, stack = set(), list(cls.__subclasses__())
    while stack:
        sub = stack.pop()
        stack.extend(sub.__subclasses__())
        parts = sub.__module__.split(".")
        if parts[0] == "lightning_distill" and not any(part.startswith("_") for part in [*parts, sub.__name__]):
            found.add(sub.__name__)
    return sorted(found)
