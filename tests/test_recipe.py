import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import MNIST10K, ROOT

from lightning_distill.cli import cli_main
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
    folder = tmp_path / "runs" / "digits_recipe"
    # the folder of `lightning-distill fit --config configs/digits/*.yaml` is left alone: no shared checkpoints
    assert not (tmp_path / "runs" / "digits").exists()
    rows = json.loads((folder / "report.json").read_text())
    assert [r["name"] for r in rows] == ["teacher", "student (scratch)", "student (distilled)"]
    assert [r["weights"] for r in rows] == [
        str(folder / s / "checkpoints/best.ckpt") for s in ("teacher", "student", "distill")
    ]
    for step in ("teacher", "student", "distill"):
        (saved,) = (folder / step).glob("version_*/config.yaml")
        assert yaml.safe_load(saved.read_text())["num_threads"] == 1
    distill = yaml.safe_load(next((folder / "distill").glob("version_*/config.yaml")).read_text())
    assert distill["model"]["init_args"]["teacher_checkpoint"] == str(folder / "teacher/checkpoints/best.ckpt")
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


def test_mnist_recipe_and_the_cli_configs_write_to_different_folders(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("recipe_mnist", ROOT / "recipes" / "mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"]
    monkeypatch.setattr(module, "cli_main", lambda args: cli_main([*args, *short]))  # the same fits, a few steps long
    monkeypatch.chdir(tmp_path)  # the configs and the recipe write under runs/ relative to the working directory
    monkeypatch.setattr(sys, "argv", ["mnist.py", "--data-root", str(MNIST10K), "--only", "teacher", "distill"])
    module.main()
    folder = tmp_path / "runs" / "mnist_recipe"
    assert not (tmp_path / "runs" / "mnist").exists()  # the folder of `lightning-distill fit --config configs/mnist/*`
    for step in ("teacher", "distill"):
        done = json.loads((folder / step / "done.json").read_text())
        assert done["result"]["checkpoint"] == str(folder / step / "checkpoints/best.ckpt")
        assert list((folder / step).glob("version_0/metrics.csv"))
    (saved,) = (folder / "distill").glob("version_*/config.yaml")
    teacher = yaml.safe_load(saved.read_text())["model"]["init_args"]["teacher_checkpoint"]
    assert teacher == str(folder / "teacher/checkpoints/best.ckpt")
