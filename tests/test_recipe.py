import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from lightning_distill.recipe import Recipe, StepFailed


def test_steps_are_skipped_when_done_and_redone_with_force(tmp_path: Path) -> None:
    calls: list[str] = []
    recipe = Recipe("demo", root=tmp_path)
    recipe.step("a")(lambda: calls.append("a") or {"value": 1})
    recipe.step("b")(lambda: calls.append("b") or {"value": recipe.result("a")["value"] + 1})
    assert recipe.run() == {"a": {"value": 1}, "b": {"value": 2}}
    recipe.run()
    assert calls == ["a", "b"]
    recipe.run(force=True)
    assert calls == ["a", "b", "a", "b"]
    recipe.run(force=True, only=["b"])
    assert calls == ["a", "b", "a", "b", "b"]


def test_failed_step_keeps_earlier_results_and_resumes(tmp_path: Path) -> None:
    recipe = Recipe("demo", root=tmp_path)
    state = {"broken": True}
    recipe.step("first")(lambda: {"ok": True})

    @recipe.step("second")
    def second() -> dict:
        if state["broken"]:
            raise RuntimeError("disk full")
        return {"ok": True}

    with pytest.raises(StepFailed, match=r"step 'second' of recipe 'demo' failed: RuntimeError: disk full") as info:
        recipe.run()
    assert "resumes at 'second'" in str(info.value)
    assert recipe.is_done("first") and not recipe.is_done("second")
    state["broken"] = False
    first_done = (tmp_path / "demo/first/done.json").stat().st_mtime_ns
    recipe.run()
    assert recipe.is_done("second")
    assert (tmp_path / "demo/first/done.json").stat().st_mtime_ns == first_done


def test_duplicate_or_unknown_steps(tmp_path: Path) -> None:
    recipe = Recipe("demo", root=tmp_path)
    recipe.step("a")(dict)
    with pytest.raises(ValueError, match="already has a step named 'a'"):
        recipe.step("a")
    with pytest.raises(ValueError, match=r"unknown steps \['z'\]"):
        recipe.run(only=["z"])


def test_digits_recipe_end_to_end(tmp_path: Path) -> None:
    script = ROOT / "recipes" / "digits.py"
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    folder = tmp_path / "runs" / "digits"
    rows = json.loads((folder / "report.json").read_text())
    assert [r["name"] for r in rows] == ["teacher", "student (scratch)", "student (distilled)"]
    teacher, _, distilled = rows
    assert teacher["accuracy"] > 0.9 and distilled["accuracy"] > 0.85
    assert distilled["params"] < teacher["params"] / 10
    assert distilled["size_fraction_of_reference"] < 0.2
    assert (folder / "report.md").read_text().startswith("# digits")
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # a rerun skips every finished step
    rerun = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0
    assert rerun.stdout.count("done before, skipped") == 5
