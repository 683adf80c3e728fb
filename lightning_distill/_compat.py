"""The import paths of 0.1, kept working for one release (``lightning_distill.export`` is now
``lightning_distill.core.export``).

0.2 put the plain-PyTorch core under :mod:`lightning_distill.core`, the Lightning layer under
:mod:`lightning_distill.lightning` and the recipe engine at :mod:`lightning_distill.recipes.engine`. A finder on
``sys.meta_path`` maps every old module path, and every module under it (``lightning_distill.export.onnx``), to the
module object at its new path: the same object, so classes keep their identity (``isinstance``, pickles and YAML
``class_path`` strings naming an old path resolve to the classes of the new one). Each old name warns once with a
``DeprecationWarning`` that names its new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

__all__ = ["MOVED", "REMOVED_IN", "install", "new_name"]

REMOVED_IN = "0.3"
_CORE = (
    "models", "losses", "pruning", "quantization", "export", "benchmark", "batch", "safe_load", "atomic",
    "cpu_features", "text_encoding", "_optional",
)  # fmt: skip
_LIGHTNING = ("modules", "callbacks", "data", "tuning", "cli", "main", "trainer")
# Old module path -> new module path. A module under an old path moves with it, unless a longer old path names it.
MOVED: dict[str, str] = {
    **{f"lightning_distill.{name}": f"lightning_distill.core.{name}" for name in _CORE},
    **{f"lightning_distill.{name}": f"lightning_distill.lightning.{name}" for name in _LIGHTNING},
    "lightning_distill.recipe": "lightning_distill.recipes.engine",
    "lightning_distill.modules._teacher_cache": "lightning_distill.core.teacher_cache.cache",
    "lightning_distill.modules._teacher_logits": "lightning_distill.core.teacher_cache.logits",
    "lightning_distill.models.calibration": "lightning_distill.core.models.class_offset",
    "lightning_distill.recipes.text.calibrate": "lightning_distill.recipes.text.offset",
}


def new_name(old: str) -> str | None:
    """The new path of module ``old`` (``lightning_distill.export.onnx`` -> ``lightning_distill.core.export.onnx``),
    or None where ``old`` did not move."""
    parts = old.split(".")
    for end in range(len(parts), 1, -1):
        moved = MOVED.get(".".join(parts[:end]))
        if moved is not None:
            return ".".join([moved, *parts[end:]])
    return None


class _Alias(importlib.abc.Loader):
    """Loads an old path as the module already imported (or now imported) at its new path."""

    def __init__(self, new: str) -> None:
        self.new = new
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system set the alias's spec on the module it was given; the module keeps its own.
        module.__spec__ = self.spec


class _MovedModules(importlib.abc.MetaPathFinder):
    """Finds old module paths and answers with the module at the new path, warning once per old path."""

    def __init__(self) -> None:
        self.warned: set[str] = set()

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        new = new_name(fullname) if fullname.startswith("lightning_distill.") else None
        if new is None:
            return None
        if fullname not in self.warned:
            self.warned.add(fullname)
            warnings.warn(
                f"{fullname} is now {new}; the old path will be removed in {REMOVED_IN}",
                DeprecationWarning,
                stacklevel=2,
            )
        return importlib.machinery.ModuleSpec(fullname, _Alias(new))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (before the path finder, which would load a second copy of a
    module under an old package's ``__path__``); once per process."""
    if not any(isinstance(finder, _MovedModules) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedModules())
