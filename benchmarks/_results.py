"""What the benchmark scripts share for their result files: written whole (atomically), with relative paths only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import write_json
from lightning_distill.core.benchmark import relative_paths

ROOT = Path(__file__).resolve().parents[1]


def write_result(path: str | Path, record: Any, indent: int = 2) -> Path:
    """Write ``record`` as JSON at ``path`` with every absolute path made relative to the project root (the shared
    data becomes ``../shared/...``), so the file kept in ``benchmarks/results/`` names no machine's folders."""
    return write_json(path, relative_paths(record, ROOT), indent=indent)
