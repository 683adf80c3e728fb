"""The package's shape: a Lightning-free core, dependencies one way, no import cycles, short files and functions.

The core (models, losses, pruning, quantization, export, benchmark and the plain helpers beside them) is usable
without Lightning; the Lightning layer (modules, callbacks, data, cli, trainer, main, tuning, recipes) builds on it,
never the reverse.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_distill"
CORE = (
    "models", "losses", "pruning", "quantization", "export", "benchmark", "batch", "safe_load", "cpu_features",
    "atomic", "errors", "cache_files",
)
LIGHTNING_LAYER = (
    "modules", "callbacks", "data", "cli", "trainer", "checkpoint_io", "main", "__main__", "tuning", "recipes",
    "console",
)
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 80


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package modules that ``name`` imports (at any depth of the file, lazy imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: _imports(name, path, known) for name, path in known.items()}


def _area(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_core_imports_nothing_of_the_lightning_layer() -> None:
    wrong = [
        f"{module} imports {target}"
        for module, targets in _graph().items()
        if _area(module) in CORE
        for target in sorted(targets)
        if _area(target) in LIGHTNING_LAYER
    ]
    assert not wrong, "the core must not depend on the Lightning layer:\n" + "\n".join(wrong)


def test_no_import_cycles() -> None:
    graph = _graph()
    # Package __init__ files re-export their children; a child importing a sibling through the parent is no cycle of
    # concepts, so edges into a package's own __init__ from inside that package are left out.
    edges = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in graph.items()}
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == 1:
                cycles.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("package", [p for p in CORE])
def test_core_packages_import_without_lightning(package: str) -> None:
    code = (
        f"import sys, lightning_distill.{package}; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    loaded = f"{done.stdout.strip()} {done.stderr[-500:]}"
    assert done.returncode == 0, f"lightning_distill.{package} loads Lightning: {loaded}"


def test_files_and_functions_are_short() -> None:
    long_files, long_functions = [], []
    for name, path in _modules().items():
        text = path.read_text()
        if len(text.splitlines()) > MAX_FILE_LINES:
            long_files.append(f"{path.relative_to(PACKAGE.parent)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long_functions.append(f"{name}.{node.name}: {length} lines")
    assert not long_files, f"files over {MAX_FILE_LINES} lines (split by concept):\n" + "\n".join(long_files)
    assert not long_functions, f"functions over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(long_functions)
