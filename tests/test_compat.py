"""The import paths of 0.1 keep working until 0.3: the same module objects, one DeprecationWarning per old name.

This file, and ``lightning_distill/_compat.py``, are the only ones that may name the old paths.
"""

from __future__ import annotations

import json
import pickle
import re
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import ROOT

from lightning_distill._compat import MOVED, new_name
from lightning_distill.core.models import MLP
from lightning_distill.lightning.cli import DistillCLI
from lightning_distill.lightning.data import DigitsDataModule
from lightning_distill.lightning.modules import DistillationModule

_IMPORT_TWICE = """
import json, sys, warnings
with warnings.catch_warnings(record=True) as seen:
    warnings.simplefilter("always")
    import lightning_distill.export as old
    import lightning_distill.export.onnx as old_onnx
    del sys.modules["lightning_distill.export"]  # imported again: found again, but no second warning
    import lightning_distill.export as again
    from lightning_distill.recipe import Recipe
    import lightning_distill.core.export as new
    import lightning_distill.core.export.onnx as new_onnx
    from lightning_distill.recipes.engine import Recipe as NewRecipe
print(json.dumps({
    "same": [old is new, again is new, old_onnx is new_onnx, Recipe is NewRecipe],
    "spec": [new.__spec__.name, new_onnx.__spec__.name],
    "warnings": [str(w.message) for w in seen if issubclass(w.category, DeprecationWarning)],
}))
"""


def test_an_old_path_is_the_new_module_and_warns_once() -> None:
    done = subprocess.run([sys.executable, "-c", _IMPORT_TWICE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.splitlines()[-1])
    assert result["same"] == [True, True, True, True]
    assert result["spec"] == ["lightning_distill.core.export", "lightning_distill.core.export.onnx"]
    assert result["warnings"] == [
        "lightning_distill.export is now lightning_distill.core.export; the old path will be removed in 0.3",
        "lightning_distill.export.onnx is now lightning_distill.core.export.onnx; the old path will be removed in 0.3",
        "lightning_distill.recipe is now lightning_distill.recipes.engine; the old path will be removed in 0.3",
    ]


def test_every_old_path_maps_to_a_module_that_exists() -> None:
    assert new_name("lightning_distill.modules._teacher_cache") == "lightning_distill.core.teacher_cache.cache"
    assert new_name("lightning_distill.models.calibration") == "lightning_distill.core.models.class_offset"
    assert new_name("lightning_distill.models.mlp") == "lightning_distill.core.models.mlp"
    assert new_name("lightning_distill.core.models") is None and new_name("lightning_distill.recipes.text") is None
    for new in MOVED.values():
        assert (ROOT / Path(*new.split("."))).with_suffix(".py").is_file() or (ROOT / Path(*new.split("."))).is_dir()


def test_a_config_and_a_pickle_naming_old_paths_load_the_new_classes(tmp_path: Path) -> None:
    config = {
        "model": {
            "class_path": "lightning_distill.modules.DistillationModule",
            "init_args": {
                "student": {"class_path": "lightning_distill.models.MLP", "init_args": {"hidden_sizes": [8]}},
                "teacher": {"class_path": "lightning_distill.models.mlp.MLP", "init_args": {"hidden_sizes": [16]}},
            },
        },
        "data": {"class_path": "lightning_distill.data.DigitsDataModule"},
        "trainer": {"logger": False, "callbacks": [{"class_path": "lightning_distill.callbacks.MagnitudePruning"}]},
    }
    path = tmp_path / "old_paths.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = DistillCLI(args=["--config", str(path), f"--trainer.default_root_dir={tmp_path}"], run=False)
    assert type(cli.model) is DistillationModule and type(cli.model.student) is MLP and type(cli.model.teacher) is MLP
    assert type(cli.datamodule) is DigitsDataModule
    assert "MagnitudePruning" in [type(c).__name__ for c in cli.trainer.callbacks]
    assert pickle.loads(b"clightning_distill.models.mlp\nMLP\n.") is MLP  # a pickle written by 0.1


_OLD_NAMES = "|".join(re.escape(old) for old in sorted(MOVED, key=len, reverse=True))
_OLD = re.compile(rf"(?<![\w.])({_OLD_NAMES})(?!\w)")


def test_the_project_uses_only_the_new_paths() -> None:
    allowed = {ROOT / "lightning_distill" / "_compat.py", Path(__file__).resolve()}
    files = [ROOT / "pyproject.toml"]
    for folder in ("lightning_distill", "tests", "recipes", "benchmarks", "configs"):
        files += [p for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".yaml", ".yml", ".toml")]
    old = [
        f"{path.relative_to(ROOT)}:{number}: {match[0]}"
        for path in sorted(set(files) - allowed)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for match in _OLD.finditer(line)
    ]
    assert not old, "old import paths (run /work/prompts/rewrite_imports.py):\n" + "\n".join(old)
