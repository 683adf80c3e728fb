import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import MNIST10K, ROOT

from lightning_distill.core.export import load_exported
from lightning_distill.lightning.cli import cli_main
from lightning_distill.recipes.engine import Recipe, StepFailed, fingerprint


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


def _chain(tmp_path: Path, state: dict, calls: list[str]) -> Recipe:
    """teacher -> distill (reads the teacher's model via result) -> report (reads distill's file by path); student
    reads nothing."""
    recipe = Recipe("demo", root=tmp_path)

    def write(step: str, name: str, text: str) -> str:
        calls.append(step)
        path = recipe.step_dir(step) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return str(path)

    recipe.step("teacher")(lambda: {"model": write("teacher", "model.txt", str(state["teacher"]))})
    recipe.step("student")(lambda: {"model": write("student", "model.txt", "3")})

    @recipe.step("distill")
    def distill() -> dict:
        teacher = int(Path(recipe.result("teacher")["model"]).read_text())
        return {"model": write("distill", "model.txt", str(10 * teacher))}

    @recipe.step("report", reads=["distill"])  # reads distill's file by its path, not through recipe.result
    def report() -> dict:
        return {"report": write("report", "report.txt", (recipe.step_dir("distill") / "model.txt").read_text())}

    return recipe


def test_redoing_a_step_with_only_redoes_what_read_it_on_the_next_plain_run(tmp_path: Path, capsys) -> None:
    state, calls = {"teacher": 1}, []
    recipe = _chain(tmp_path, state, calls)
    recipe.run()
    assert calls == ["teacher", "student", "distill", "report"]
    report = tmp_path / "demo" / "report" / "report.txt"
    assert report.read_text() == "10"

    state["teacher"] = 2
    capsys.readouterr()
    recipe.run(force=True, only=["teacher"])
    assert calls[4:] == ["teacher"] and report.read_text() == "10"
    out = capsys.readouterr().out
    assert "distill: not in --only, left as it is although teacher's model changed since this step ran" in out
    assert "student: not in --only, left as it is (done before, inputs and outputs unchanged)" in out

    recipe.run()  # the plain rerun redoes distill (it read the teacher) and every step after it
    assert calls[5:] == ["distill", "report"]
    assert report.read_text() == "20"
    out = capsys.readouterr().out
    assert "teacher: done before, skipped" in out and "student: done before, skipped" in out
    assert "distill: redone: teacher's model changed since this step ran" in out
    assert "report: redone: step 'distill' ran before it in this run" in out
    done = json.loads((tmp_path / "demo" / "distill" / "done.json").read_text())
    assert list(done["inputs"]["reads"]) == ["teacher"]  # recorded from its recipe.result call

    recipe.run()
    assert calls[7:] == []
    assert capsys.readouterr().out.count("done before, skipped") == 4


def test_a_step_read_by_path_is_declared_and_checked(tmp_path: Path, capsys) -> None:
    state, calls = {"teacher": 1}, []
    recipe = _chain(tmp_path, state, calls)
    recipe.run()
    (tmp_path / "demo" / "distill" / "model.txt").write_text("99")  # changed behind the recipe's back
    capsys.readouterr()
    recipe.run(only=["report"])
    out = capsys.readouterr().out
    assert "distill: not in --only, left as it is although its model" in out and "changed on disk" in out
    assert "report: redone: distill's model changed since this step ran" in out
    assert (tmp_path / "demo" / "report" / "report.txt").read_text() == "99"
    recipe.run()  # distill's output changed on disk: it is redone, and the report after it
    assert calls[4:] == ["report", "distill", "report"]
    assert (tmp_path / "demo" / "report" / "report.txt").read_text() == "10"


def test_editing_a_declared_config_redoes_that_step_and_every_later_one(tmp_path: Path, capsys) -> None:
    config = tmp_path / "b.yaml"
    config.write_text("lr: 0.1\n")
    calls: list[str] = []
    recipe = Recipe("demo", root=tmp_path)
    recipe.step("a")(lambda: calls.append("a") or {})
    recipe.step("b", configs=[config])(lambda: calls.append("b") or {"lr": config.read_text()})
    recipe.step("c")(lambda: calls.append("c") or {})
    recipe.run()
    recipe.run()
    assert calls == ["a", "b", "c"]
    config.write_text("lr: 0.2\n")
    capsys.readouterr()
    assert recipe.run()["b"] == {"lr": "lr: 0.2\n"}
    assert calls[3:] == ["b", "c"]
    out = capsys.readouterr().out
    assert f"b: redone: config {config} changed since this step ran" in out
    config.unlink()
    recipe.run(only=["a"])
    assert f"although config {config} is missing" in capsys.readouterr().out


def test_changed_options_redo_the_step(tmp_path: Path, capsys) -> None:
    calls: list[int] = []

    def build(epochs: int) -> Recipe:
        recipe = Recipe("demo", root=tmp_path)
        recipe.step("fit", options={"epochs": epochs, "data": ["x"]})(lambda: calls.append(epochs) or {})
        return recipe

    build(1).run()
    build(1).run()
    build(2).run()
    assert calls == [1, 2]
    assert "fit: redone: its options changed since it ran (epochs: 1 before, 2 now)" in capsys.readouterr().out


def test_missing_output_redoes_the_step_and_old_records_are_kept_unchecked(tmp_path: Path, capsys) -> None:
    calls: list[str] = []
    recipe = Recipe("demo", root=tmp_path)
    output = tmp_path / "demo" / "a" / "out.bin"

    def produce() -> dict:
        calls.append("a")
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes(b"weights")
        return {"weights": str(output), "note": "not/a/path"}

    recipe.step("a")(produce)
    recipe.run()
    done = json.loads((tmp_path / "demo/a/done.json").read_text())
    assert list(done["outputs"]) == ["weights"]  # only strings naming existing files count as outputs
    output.unlink()
    recipe.run()
    assert calls == ["a", "a"]
    assert f"a: redone: its weights {output} is missing" in capsys.readouterr().out
    # a done.json written before inputs were recorded: kept, saying its inputs are not checked
    (tmp_path / "demo/a/done.json").write_text(json.dumps({"step": "a", "seconds": 1, "result": {}}))
    recipe.run()
    assert calls == ["a", "a"]
    assert "done before, skipped (recorded by an older version without its inputs" in capsys.readouterr().out


def test_a_step_recorded_without_inputs_is_redone_when_an_earlier_step_finished_after_it(tmp_path: Path) -> None:
    calls: list[str] = []
    recipe = Recipe("demo", root=tmp_path)
    recipe.step("a")(lambda: calls.append("a") or {})
    recipe.step("b")(lambda: calls.append("b") or {})
    recipe.run()
    done_b = tmp_path / "demo/b/done.json"
    done_b.write_text(json.dumps({"step": "b", "seconds": 1, "result": {}}))  # as an older version wrote it
    recipe.run(force=True, only=["a"])
    os.utime(done_b, ns=(0, 0))  # a finished long before it (whatever the file system's time resolution)
    recipe.run()
    assert calls == ["a", "b", "a", "b"]


def test_fingerprints_follow_content(tmp_path: Path, monkeypatch) -> None:
    import lightning_distill.recipes.engine as recipe_module

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "a.bin").write_bytes(b"1" * 100)
    before = fingerprint(folder)
    (folder / "done.json").write_text("{}")  # a step's record is not part of what it produced
    assert fingerprint(folder) == before
    (folder / "a.bin").write_bytes(b"2" * 100)
    assert fingerprint(folder) != before
    assert fingerprint(tmp_path / "nowhere") is None
    # a large file: size, mtime and its first and last END_BYTES
    monkeypatch.setattr(recipe_module, "WHOLE_FILE_LIMIT", 64)
    monkeypatch.setattr(recipe_module, "END_BYTES", 16)
    big = tmp_path / "big.bin"
    big.write_bytes(b"0" * 100)
    first = fingerprint(big)
    assert first.startswith("size:100,mtime_ns:")
    big.write_bytes(b"0" * 99 + b"1")
    assert fingerprint(big) != first


def test_reads_must_name_earlier_steps(tmp_path: Path) -> None:
    recipe = Recipe("demo", root=tmp_path)
    recipe.step("a")(dict)
    with pytest.raises(ValueError, match=r"step 'b' reads \['z'\], which are not earlier steps"):
        recipe.step("b", reads=["z"])


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
    import lightning_distill.recipes.mnist as module  # what recipes/mnist.py runs
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2"]
    monkeypatch.setattr(module, "cli_main", lambda args: cli_main([*args, *short]))  # the same fits, a few steps long
    monkeypatch.chdir(tmp_path)  # the configs and the recipe write under runs/ relative to the working directory
    module.main(["--data-root", str(MNIST10K), "--only", "teacher", "distill", "export"])
    folder = tmp_path / "runs" / "mnist_recipe"
    assert not (tmp_path / "runs" / "mnist").exists()  # the folder of `lightning-distill fit --config configs/mnist/*`
    for step in ("teacher", "distill"):
        done = json.loads((folder / step / "done.json").read_text())
        assert done["result"]["checkpoint"] == str(folder / step / "checkpoints/best.ckpt")
        assert list((folder / step).glob("version_0/metrics.csv"))
    (saved,) = (folder / "distill").glob("version_*/config.yaml")
    teacher = yaml.safe_load(saved.read_text())["model"]["init_args"]["teacher_checkpoint"]
    assert teacher == str(folder / "teacher/checkpoints/best.ckpt")
    # the distilled student as an export folder, predicting the digits by name
    exported = json.loads((folder / "export" / "done.json").read_text())["result"]
    assert Path(exported["folder"]).resolve() == folder / "export" / "student"
    classify = load_exported(exported["folder"])
    assert classify.id2label == {i: str(i) for i in range(10)} and len(classify(torch.zeros(3, 1, 28, 28))) == 3
