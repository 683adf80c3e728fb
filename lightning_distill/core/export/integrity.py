"""Export folders that cannot mix models: which folders an export may replace, and graphs checked against their export.

An export is written whole into a temporary folder and swapped in by rename
(:func:`~lightning_distill.core.atomic.replace_folder`), so a re-export with fewer graphs leaves none of the previous
export's behind. It may replace a new or empty folder, or one that holds a previous export of this package (its
``export_info.json`` says so); any other folder is refused unless the caller passes ``overwrite=True``, so a user's
files are never replaced without a word.

``export_info.json`` records an ``export_id`` and the sha256 of every file the export wrote, so
:func:`~lightning_distill.core.export.load_exported` can check that the graph it runs, ``config.json`` (the label names)
and the tokenizer's files come from one export: a graph copied in from another export is refused by name.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from lightning_distill.core.cache_files import file_sha256
from lightning_distill.core.export.model_card import EXPORT_INFO, read_export_info

__all__ = [
    "EXPORT_FORMAT",
    "ExportMismatchError",
    "check_export_target",
    "export_record",
    "is_export_folder",
    "verify_export",
]

EXPORT_FORMAT = "lightning-distill/export"
# Files rewritten after the export (measurements go into the card), so they carry no hash.
_UNHASHED = (EXPORT_INFO, "README.md")
# Files a loader reads wherever they are there (an export of a tensor classifier without preprocessing has none): one
# that export_info.json does not list was copied in, and is refused rather than read unchecked.
_READ_WHEN_PRESENT = ("config.json", "preprocessor_config.json")
# export_info.json of exports written before it carried a format: these keys were always there.
_LEGACY_KEYS = {"title", "provenance", "quantization"}


class ExportMismatchError(ValueError):
    """A file of an export folder was not written by the export that wrote its ``config.json`` (or was changed)."""


def is_export_folder(folder: str | Path) -> bool:
    """Whether ``folder`` holds an export of this package (its ``export_info.json`` says so)."""
    try:
        info = read_export_info(folder)
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and (info.get("format") == EXPORT_FORMAT or _LEGACY_KEYS <= set(info))


def check_export_target(folder: str | Path, overwrite: bool = False) -> None:
    """Refuse to export into ``folder`` where that would replace what is not a previous export of this package.

    Args:
        folder: The export's folder.
        overwrite: Replace a non-empty folder that holds no export of this package as a whole.

    Raises:
        FileExistsError: ``folder`` is a file; or a non-empty folder without an export of ours and ``overwrite`` is
            False (the message lists a few of its entries); or it holds the working directory.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"export folder {str(folder)!r} is a file: pass the path of a new or empty folder")
    if not folder.is_dir():
        return
    if Path.cwd().resolve().is_relative_to(folder.resolve()):
        raise FileExistsError(
            f"export folder {str(folder)!r} holds the working directory, which an export (that replaces its folder "
            "as a whole) cannot replace: export into a subfolder, e.g. export/"
        )
    entries = sorted(p.name for p in folder.iterdir())
    if not entries or overwrite or is_export_folder(folder):
        return
    shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} in all)" if len(entries) > 5 else "")
    raise FileExistsError(
        f"export folder {str(folder)!r} is not empty ({shown}) and holds no previous export of lightning-distill "
        f"(no {EXPORT_INFO} of ours): an export replaces its folder as a whole. Choose a new or empty folder, or "
        "pass overwrite=True (`lightning-distill export --overwrite true`) to replace this one and everything in it"
    )


def export_record(folder: str | Path) -> dict[str, Any]:
    """``export_info.json``'s entries that tie a freshly written export's files together: format, id, sha256s."""
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.relative_to(folder).as_posix() not in _UNHASHED)
    return {
        "format": EXPORT_FORMAT,
        "export_id": os.urandom(8).hex(),
        "files": {p.relative_to(folder).as_posix(): file_sha256(p) for p in files},
    }


def verify_export(folder: str | Path, graph: str) -> None:
    """Check that ``graph``, ``config.json``, ``preprocessor_config.json`` and the tokenizer's files of ``folder`` come
    from one export.

    A folder without ``export_info.json`` (written by optimum) is not checked; a previous version's export, which
    records no hashes, is loaded with a warning.

    Raises:
        ExportMismatchError: a checked file is not one the export wrote (a ``preprocessor_config.json`` in a folder
            exported without one included), or its content changed since; the message names the file.
    """
    folder = Path(folder)
    if not (folder / EXPORT_INFO).is_file():
        return
    try:
        info = read_export_info(folder)
    except ValueError as error:
        raise ExportMismatchError(
            f"{str(folder / EXPORT_INFO)!r} is unreadable ({error}), so the folder's files cannot be checked against "
            "each other: export the model again"
        ) from error
    recorded = info.get("files") if isinstance(info, dict) else None
    if not isinstance(recorded, dict):
        warnings.warn(
            f"{str(folder)!r} records no file hashes in {EXPORT_INFO} (an export of an earlier lightning-distill), "
            f"so {graph} cannot be checked against its config.json: export it again",
            stacklevel=3,
        )
        return
    present = (name for name in (*recorded, *_READ_WHEN_PRESENT) if (folder / name).is_file())
    checked = [graph, *(name for name in present if not name.endswith(".onnx"))]
    for name in dict.fromkeys(checked):
        if name not in recorded:
            raise ExportMismatchError(
                f"{str(folder / name)!r} is not part of the export {info.get('export_id')} that wrote "
                f"{str(folder / 'config.json')!r} (it was copied in from elsewhere), so its predictions would not "
                f"match that config's labels. Export the model again, or load a graph the export wrote: "
                f"{sorted(n for n in recorded if n.endswith('.onnx'))}"
            )
        if file_sha256(folder / name) != recorded[name]:
            raise ExportMismatchError(
                f"{str(folder / name)!r} differs from the file the export {info.get('export_id')} wrote (its sha256 "
                f"in {EXPORT_INFO} does not match): it was changed or replaced by another export's. Export the model "
                "again into this folder"
            )
