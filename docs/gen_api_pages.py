"""Write the API reference pages (``docs/api/*.md``) and their nav entries in ``mkdocs.yml``.

Run from the repository root after adding, moving or renaming a public package or module:
``python docs/gen_api_pages.py``. Each public package (no ``_`` in its dotted path) gets one page with a ``:::``
directive for the package and one for each of its public modules that lists names in ``__all__`` the package does not
re-export; ``tests/test_docs.py`` checks that every such name is rendered.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "docs" / "api"
MKDOCS = ROOT / "mkdocs.yml"
TOP = "lightning_distill"
NAV_START = "  # api-nav-start (written by docs/gen_api_pages.py)"
NAV_END = "  # api-nav-end"


def public_modules(top: str = TOP) -> dict[str, object]:
    """Import every module of ``top`` whose dotted path has no ``_``-prefixed part.

    Args:
        top: The top package's name.

    Returns:
        The modules by dotted name, in walk order (a package before its modules).
    """
    package = importlib.import_module(top)
    found = {top: package}
    for info in pkgutil.walk_packages(package.__path__, prefix=f"{top}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        found[info.name] = importlib.import_module(info.name)
    return found


def exported(module: object) -> list[str]:
    """The names a module lists in ``__all__`` (none when it has no ``__all__``)."""
    return list(getattr(module, "__all__", []))


def owning_package(name: str, modules: dict[str, object]) -> str:
    """The nearest public package holding module ``name`` (itself when it is a package)."""
    while not hasattr(modules[name], "__path__"):
        name = name.rpartition(".")[0]
    return name


def pages(modules: dict[str, object]) -> dict[str, dict[str, list[str]]]:
    """What each package's page documents: the package, then its modules' names that no package above re-exports.

    Args:
        modules: The output of :func:`public_modules`.

    Returns:
        For each public package, the dotted names of its page's ``:::`` directives, each with the members to show
        (its ``__all__``, or the names no package above re-exports).
    """
    result: dict[str, dict[str, list[str]]] = {
        name: {name: exported(module)} for name, module in modules.items() if hasattr(module, "__path__")
    }
    for package in list(result):
        # A name that is also a submodule's (quantization.quantize) resolves to the submodule in mkdocstrings: the
        # submodule's directive shows the object of that name.
        for name in exported(modules[package]):
            if f"{package}.{name}" in modules and hasattr(modules[f"{package}.{name}"], name):
                result[package][f"{package}.{name}"] = [name]
    for name, module in modules.items():
        if hasattr(module, "__path__") or not exported(module) or name in result[owning_package(name, modules)]:
            continue
        covered = {n for p, m in modules.items() if name.startswith(f"{p}.") for n in exported(m)}
        own = [n for n in exported(module) if n not in covered]
        if own:
            result[owning_package(name, modules)][name] = own
    return dict(sorted(result.items()))


def page_text(package: str, blocks: dict[str, list[str]]) -> str:
    """The markdown of one API page."""
    lines = [f"# `{package}`", ""]
    for name, members in blocks.items():
        lines.append(f"::: {name}")
        if members:
            lines += ["    options:", "      members:", *(f"        - {member}" for member in members)]
        lines.append("")
    return "\n".join(lines)


def nav_lines(packages: list[str]) -> list[str]:
    """The ``mkdocs.yml`` nav entries of the API pages."""
    return [f"      - {package}: api/{package}.md" for package in packages]


def main() -> None:
    """Rewrite ``docs/api/*.md`` and the API part of the nav in ``mkdocs.yml``."""
    sys.path.insert(0, str(ROOT))
    layout = pages(public_modules())
    for old in API.glob("*.md"):
        old.unlink()
    API.mkdir(parents=True, exist_ok=True)
    for package, names in layout.items():
        (API / f"{package}.md").write_text(page_text(package, names))
    lines = MKDOCS.read_text().splitlines()
    start, end = lines.index(NAV_START), lines.index(NAV_END)
    lines[start + 1 : end] = nav_lines(list(layout))
    MKDOCS.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(layout)} pages under {API.relative_to(ROOT)} and their nav entries in mkdocs.yml")


if __name__ == "__main__":
    main()
