"""The documentation is tested: every Python block of README.md and docs/ runs, and the API reference is complete.

A block is left out only when the line before its fence says why, e.g. ``<!-- no-test: needs the Hub -->``; each such
block is reported as a skipped test with that reason (``pytest -rs`` lists them). The blocks of one file run in order,
sharing a namespace of their own, in a scratch copy of the repository root (links to its folders, so ``configs/`` and
``../shared/`` resolve, while ``runs/`` and caches are written in the scratch folder); all files run in one
interpreter besides pytest's, so torch and Lightning are imported once.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import re
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<lang>[\w+-]*)\s*$")
NO_TEST = re.compile(r"^\s*<!--\s*no-test:\s*(?P<reason>.+?)\s*-->\s*$")
TOP = "lightning_distill"

# Runs each file's blocks in order in a namespace of its own, in the file's scratch folder, all files in one
# interpreter (importing torch and Lightning once); writes, per file, None or the failing block's traceback.
DRIVER = """
import json, os, sys, traceback
files, results = json.loads(sys.stdin.read()), {}
for file in files:
    os.chdir(file["cwd"])
    namespace, results[file["name"]] = {"__name__": "__main__"}, None
    for block in file["blocks"]:
        try:
            exec(compile(block["code"], block["where"], "exec"), namespace)
        except BaseException:
            results[file["name"]] = f"the block at {block['where']} failed:\\n{traceback.format_exc()}"
            break
with open(sys.argv[1], "w") as out:
    json.dump(results, out)
"""


@dataclass(frozen=True)
class Block:
    """One fenced Python block of a markdown file."""

    where: str
    code: str
    skip_reason: str | None


def shown(path: Path) -> str:
    """A file's path as messages name it: relative to the repository root when it is inside it."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def closes(line: str, ticks: int) -> bool:
    """Whether ``line`` closes a fence opened with ``ticks`` backticks (a bare fence at least as long)."""
    match = FENCE.match(line)
    return bool(match) and not match["lang"] and len(match["ticks"]) >= ticks


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a markdown file, dedented, each with the reason it is not run (or None).

    Args:
        path: A markdown file.

    Returns:
        The blocks in file order.

    Raises:
        ValueError: When a fence is never closed.
    """
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        start, indent, ticks = i, len(match["indent"]), len(match["ticks"])
        i += 1
        while i < len(lines) and not closes(lines[i], ticks):
            i += 1
        if i == len(lines):
            raise ValueError(f"{shown(path)}:{start + 1}: the ``` fence opened here is never closed")
        if match["lang"] == "python":
            previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
            skip = NO_TEST.match(previous)
            code = "\n".join(line[indent:] for line in lines[start + 1 : i])
            where = f"{shown(path)}:{start + 2}"
            blocks.append(Block(where, code, skip["reason"] if skip else None))
        i += 1
    return blocks


def scratch_root(tmp_path: Path) -> Path:
    """A folder beside a link to ``../shared`` whose entries link to the repository's top-level folders and files."""
    root = tmp_path / "repo"
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in {".git", "runs", "site", "lightning_logs"}:
            (root / entry.name).symlink_to(entry)
    if SHARED.exists():
        (tmp_path / "shared").symlink_to(SHARED)
    return root


FILES_WITH_BLOCKS = [path for path in DOC_FILES if any(b.skip_reason is None for b in python_blocks(path))]
SKIPPED_BLOCKS = [block for path in DOC_FILES for block in python_blocks(path) if block.skip_reason]


@pytest.fixture(scope="session")
def block_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str | None]:
    """Every file's blocks run (see DRIVER): for each file, None or what failed."""
    files = []
    for path in FILES_WITH_BLOCKS:
        blocks = [{"where": b.where, "code": b.code} for b in python_blocks(path) if b.skip_reason is None]
        cwd = scratch_root(tmp_path_factory.mktemp("docs"))
        files.append({"name": shown(path), "cwd": str(cwd), "blocks": blocks})
    scratch = tmp_path_factory.mktemp("docs_env")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "LIGHTNING_DISTILL_CACHE": str(scratch / "cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HOME": str(scratch / "hf"),
        "MPLBACKEND": "Agg",
    }
    out = scratch / "results.json"
    result = subprocess.run(
        [sys.executable, "-c", DRIVER, str(out)],
        input=json.dumps(files),
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0 and out.exists(), f"the block runner itself failed:\n{result.stderr[-6000:]}"
    return json.loads(out.read_text())


@pytest.mark.parametrize("path", FILES_WITH_BLOCKS, ids=shown)
def test_python_blocks_run(path: Path, block_runs: dict[str, str | None]) -> None:
    failure = block_runs[shown(path)]
    assert failure is None, failure


@pytest.mark.parametrize("block", SKIPPED_BLOCKS, ids=lambda b: b.where)
def test_marked_blocks_are_reported(block: Block) -> None:
    pytest.skip(f"{block.where} not run: {block.skip_reason}")


def test_block_parser_reads_indented_fences_and_markers(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    text = "```bash\necho no\n```\n- item:\n\n  ```python\n  x = 1\n  ```\n"
    text += "<!-- no-test: needs the Hub -->\n```python\nimport hub\n```\n````md\n```python\nnot = run\n```\n````\n"
    page.write_text(text + "```python\n")
    with pytest.raises(ValueError, match=r"page.md:18: the ``` fence opened here is never closed"):
        python_blocks(page)
    page.write_text(text)
    blocks = python_blocks(page)
    assert [(b.code, b.skip_reason, b.where) for b in blocks] == [
        ("x = 1", None, f"{page}:7"),
        ("import hub", "needs the Hub", f"{page}:11"),
    ]


# ---- the API reference ----


def public_all() -> dict[str, list[str]]:
    """``__all__`` of every public module (no ``_``-prefixed part in its dotted path), found by walking the package."""
    package = importlib.import_module(TOP)
    names = {TOP: list(getattr(package, "__all__", []))}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{TOP}."):
        if not any(part.startswith("_") for part in info.name.split(".")):
            module = importlib.import_module(info.name)
            if hasattr(module, "__all__"):
                names[info.name] = list(module.__all__)
    return names


def inventory(site: Path) -> set[str]:
    """The object names mkdocstrings rendered, read from the site's ``objects.inv`` (Sphinx inventory v2)."""
    data = (site / "objects.inv").read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    return {line.split(" ", 1)[0] for line in zlib.decompress(data[header_end:]).decode().splitlines() if line}


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site built with ``mkdocs build --strict`` (broken links and references fail it)."""
    site = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    env["NO_MKDOCS_2_WARNING"] = "1"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if "No module named mkdocs" in result.stderr:
        pytest.fail("mkdocs is not installed: install the dev extra, pip install -e '.[dev]'")
    assert result.returncode == 0, result.stderr[-6000:]
    return site


def test_api_reference_names_every_public_name(built_site: Path) -> None:
    rendered = inventory(built_site)
    exports = public_all()
    missing = []
    for module, names in exports.items():
        # A name counts where its module renders it, or where a package above re-exports it.
        places = [p for p in exports if p == module or module.startswith(f"{p}.")]
        for name in names:
            if not any(f"{p}.{name}" in rendered for p in places if name in exports[p]):
                missing.append(f"{module}.{name}")
    assert not missing, (
        f"{len(missing)} public names are not in the API reference: {missing[:20]}; "
        "run `python docs/gen_api_pages.py` to rewrite docs/api/ and the nav"
    )


def test_api_reference_covers_every_public_package() -> None:
    pages = {p.stem for p in (ROOT / "docs" / "api").glob("*.md")}
    packages = {
        name
        for name in public_all()
        if hasattr(importlib.import_module(name), "__path__") and importlib.import_module(name).__all__
    }
    assert packages <= pages, f"no API page for {sorted(packages - pages)}: run `python docs/gen_api_pages.py`"
