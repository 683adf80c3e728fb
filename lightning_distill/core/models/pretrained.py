"""Hugging Face loading that never runs a model's own Python code: every ``from_pretrained`` of the package is here.

A ``config.json`` or ``tokenizer_config.json`` with an ``auto_map`` entry names Python classes shipped beside the
weights; loading them runs that code. Asked without ``trust_remote_code``, transformers prompts ``[y/N]`` on stdin
(waiting 15 s for an answer, or failing with an unrelated ``KeyError`` when stdin is closed). This package passes
``trust_remote_code=False`` to every ``from_pretrained`` and refuses a local folder that asks for remote code before
transformers reads it, naming the file and its ``auto_map`` entry; a Hub model that asks for it is refused the same
way after transformers reports it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["REMOTE_CODE_FILES", "RemoteCodeError", "check_no_remote_code", "from_pretrained"]

REMOTE_CODE_FILES = ("config.json", "tokenizer_config.json")


class RemoteCodeError(ValueError):
    """A model or tokenizer asks to run its own Python code (``auto_map``); it was not loaded."""


def _advice(what: str) -> str:
    return (
        f"lightning-distill loads Hugging Face files with trust_remote_code=False and never runs code shipped with "
        f"a {what}. If the architecture is one transformers ships (its model_type), delete the auto_map entry; "
        "otherwise read the code, load the model yourself with trust_remote_code=True and save it with "
        "save_pretrained as a transformers architecture"
    )


def check_no_remote_code(source: str | Path, what: str = "model") -> None:
    """Refuse a local folder whose ``config.json`` or ``tokenizer_config.json`` asks for remote code (``auto_map``).

    A Hub name (no such local folder) is not read here: :func:`from_pretrained` refuses it from transformers' answer.

    Args:
        source: A local folder or a Hub name.
        what: How the message names the source (the option the user set, e.g. ``"data.tokenizer"``).

    Raises:
        RemoteCodeError: a file of ``source`` has an ``auto_map``; the message names the folder, file and entry.
    """
    folder = Path(source)
    if not folder.is_dir():
        return
    for name in REMOTE_CODE_FILES:
        path = folder / name
        try:
            content = json.loads(path.read_text()) if path.is_file() else {}
        except (OSError, ValueError):
            continue  # transformers names the unreadable file when it loads it
        auto_map = content.get("auto_map") if isinstance(content, dict) else None
        if auto_map:
            raise RemoteCodeError(
                f"{what} {str(folder)!r} asks to run its own Python code: {name} has auto_map {json.dumps(auto_map)}. "
                + _advice(what)
            )


def from_pretrained(loader: Any, source: str | Path, what: str = "model", **options: Any) -> Any:
    """``loader.from_pretrained(source, trust_remote_code=False, **options)`` after :func:`check_no_remote_code`.

    Args:
        loader: A transformers class with ``from_pretrained`` (``AutoConfig``, ``AutoTokenizer``,
            ``AutoModelForSequenceClassification``, ...).
        source: A local folder or a Hub name.
        what: How error messages name the source.
        **options: Further arguments of ``from_pretrained`` (``config``, ``num_labels``, ...), passed as they are.

    Raises:
        RemoteCodeError: ``source`` asks to run its own code (``auto_map``), locally or on the Hub.
    """
    check_no_remote_code(source, what)
    try:
        return loader.from_pretrained(str(source), trust_remote_code=False, **options)
    except ValueError as error:
        if "trust_remote_code" not in str(error):
            raise
        raise RemoteCodeError(
            f"{what} {str(source)!r} asks to run its own Python code (transformers: "
            f"{str(error).strip().splitlines()[0]}). " + _advice(what)
        ) from error
