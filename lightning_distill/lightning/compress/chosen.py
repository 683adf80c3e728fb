"""The chosen artifact: the trial's files copied into ``<output_dir>/chosen/`` with ``chosen.json`` stating the
budget, the machine and the measured figures."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import replace_folder, write_json
from lightning_distill.lightning.compress.candidate import STUDENT_FILES


def write_chosen(folder: Path, record: dict[str, Any], statement: dict[str, Any]) -> Path:
    """Replace ``folder`` as a whole with the chosen trial's artifact, its float student and ``chosen.json``.

    Args:
        folder: ``<output_dir>/chosen``.
        record: The chosen trial's record (its ``artifact`` path and figures).
        statement: The budget, the machine and the teacher's figures, written into ``chosen.json`` beside the record.

    Returns:
        The artifact's path inside ``folder``.
    """
    artifact = Path(record["artifact"])
    with replace_folder(folder) as staged:
        for name in (artifact.name, *STUDENT_FILES):
            shutil.copy2(artifact.parent / name, staged / name)
        write_json(staged / "chosen.json", {**statement, "artifact": artifact.name, "trial": record})
    return folder / artifact.name
