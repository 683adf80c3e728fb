"""The package's shape, read from its folders: a Lightning-free core, dependencies one way, no cycles, short code.

``lightning_distill/core/`` is plain PyTorch: it imports neither the Lightning layer nor the recipes, and loads without
Lightning. ``lightning_distill/lightning/`` (the Lightning layer) imports the core, never the recipes.
``lightning_distill/recipes/`` may import both. A module belongs to the layer of its folder; the only modules beside
the three folders are the package's ``__init__``, ``__main__`` and ``_compat`` (the 0.1 import paths).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lightning_distill"
LAYERS = ("core", "lightning", "recipes")
# What each layer may import of the others: the core nothing, the Lightning layer the core, recipes both.
MAY_IMPORT = {"core": {"core"}, "lightning": {"core", "lightning"}, "recipes": {"core", "lightning", "recipes"}}
TOP_LEVEL = {"lightning_distill", "lightning_distill.__main__", "lightning_distill._compat"}
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


def _layer(module: str) -> str:
    """The layer folder ``module`` lives in, or "" for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ""


def test_every_module_lives_in_a_layer_folder() -> None:
    loose = sorted(name for name in _modules() if not _layer(name) and name not in TOP_LEVEL)
    assert not loose, (
        f"modules outside the layer folders {', '.join(LAYERS)} (move each into lightning_distill/core/ if it is plain "
        f"PyTorch, lightning_distill/lightning/ if it needs Lightning, lightning_distill/recipes/ if it is a recipe):\n"
        + "\n".join(loose)
    )


def test_layers_import_only_what_their_layer_may() -> None:
    wrong = [
        f"{module} ({_layer(module)}) imports {target} ({_layer(target)})"
        for module, targets in _graph().items()
        if _layer(module)
        for target in sorted(targets)
        if _layer(target) and _layer(target) not in MAY_IMPORT[_layer(module)]
    ]
    assert not wrong, "the core imports no other layer, and the Lightning layer no recipe:\n" + "\n".join(wrong)


def test_the_package_root_imports_no_layer() -> None:
    graph = _graph()
    roots = ("lightning_distill", "lightning_distill._compat")
    wrong = [f"{module} imports {target}" for module in roots for target in graph[module] if _layer(target)]
    assert not wrong, "importing lightning_distill must not load a layer:\n" + "\n".join(wrong)


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


def _core_packages() -> list[str]:
    """The core's packages and modules, from its folder."""
    core = PACKAGE / "core"
    return sorted(
        p.stem if p.is_file() else p.name
        for p in core.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p / "__init__.py").is_file()
    )


def test_the_core_folder_holds_the_plain_pytorch_packages() -> None:
    expected = {"models", "losses", "pruning", "quantization", "export", "benchmark", "teacher_cache", "batch"}
    assert expected <= set(_core_packages())


@pytest.mark.parametrize("package", _core_packages())
def test_core_packages_import_without_lightning(package: str) -> None:
    code = (
        f"import sys, lightning_distill.core.{package}; "
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('lightning', 'pytorch_lightning')); "
        "print(loaded); sys.exit(1 if loaded else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    loaded = f"{done.stdout.strip()} {done.stderr[-500:]}"
    assert done.returncode == 0, f"lightning_distill.core.{package} loads Lightning: {loaded}"


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
