"""Result files on a full disk (a real tmpfs, or injected ENOSPC) or after an interrupt: the previous file or nothing,
never a zero-byte or partial one, an error that names the path, and a next run that proceeds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime.quantization
import pytest
import torch
from full_disk import Disk, disk_fixture  # noqa: F401 (the fixture `disk`)
from torch import nn

from lightning_distill.core.atomic import WriteError, staged_file, write_text
from lightning_distill.core.benchmark import write_report, write_rows
from lightning_distill.core.export import OnnxExportConfig, OrtQuantConfig, export_onnx, quantize_onnx
from lightning_distill.core.pruning import load_pruned, save_pruned
from lightning_distill.recipes.engine import Recipe

NO_SPACE = r"no space left on device while writing "


def _recipe(root: Path, disk: Disk | None = None) -> tuple[Recipe, list[str]]:
    """One step that writes ``make/out.txt``; with ``disk``, the disk is full once it has."""
    recipe, calls = Recipe("demo", root=root), []

    @recipe.step("make")
    def make() -> dict:
        calls.append("make")
        out = write_text(recipe.step_dir("make") / "out.txt", "result")
        if disk is not None:
            disk.fill()
        return {"out": str(out)}

    return recipe, calls


def test_done_json_on_a_full_disk_is_never_empty_and_the_next_run_proceeds(disk: Disk) -> None:
    recipe, calls = _recipe(disk.folder, disk)
    with pytest.raises(WriteError, match=NO_SPACE + r".*make/done\.json"):
        recipe.run()
    assert disk.files() == ["demo", "demo/make", "demo/make/out.txt"]  # no done.json, empty or not; no temporary
    disk.free()
    recipe, calls = _recipe(disk.folder)
    recipe.run()
    assert calls == ["make"]
    assert json.loads((disk.folder / "demo" / "make" / "done.json").read_text())["result"]["out"].endswith("out.txt")


@pytest.mark.parametrize("content", ["", "{", "[]"])
@pytest.mark.parametrize("force", [False, True])
def test_an_unreadable_done_json_warns_and_its_step_is_redone(tmp_path: Path, content: str, force: bool) -> None:
    recipe, calls = _recipe(tmp_path)
    recipe.run()
    done = tmp_path / "demo" / "make" / "done.json"
    done.write_text(content)  # what an older version left on a full disk
    recipe, calls = _recipe(tmp_path)
    with pytest.warns(UserWarning, match=r"demo/make/done\.json cannot be read .*step 'make' counts as not finished"):
        recipe.run(force=force)
    assert calls == ["make"]
    assert json.loads(done.read_text())["step"] == "make"


def test_temporaries_of_a_dead_writer_are_gone_after_the_next_recipe_run(tmp_path: Path) -> None:
    recipe, calls = _recipe(tmp_path)
    recipe.run()
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout)
    step = tmp_path / "demo" / "make"
    (step / f".done.json.{dead}-0123abcd.tmp").write_text('{"half')
    (step / f".student.{dead}-89abcdef.tmp").mkdir()  # a folder being written by replace_folder
    (step / f".student.{dead}-89abcdef.tmp" / "model.pt").write_bytes(b"half")
    live = step / f".model.onnx.{os.getpid()}-00000000.tmp"
    live.write_bytes(b"still being written")
    recipe.run()
    assert calls == ["make"]  # finished before: skipped, the temporaries changed none of its fingerprints
    assert sorted(p.name for p in step.iterdir()) == sorted(["done.json", "out.txt", live.name])


def test_benchmark_rows_and_reports_keep_their_previous_content_on_a_full_disk(disk: Disk) -> None:
    rows = disk.folder / "rows.json"
    first = {"name": "a", "accuracy": 0.9, "latency_ms_p50": 1.0, "size_mb": 1.0}
    write_rows([first], rows)
    report = write_report([first], disk.folder / "report", title="t", reference="a")
    before = {path: path.read_bytes() for path in (rows, report / "report.json", report / "report.md")}
    disk.fill()
    with pytest.raises(WriteError, match=NO_SPACE + r".*rows\.json"):
        write_rows([{**first, "name": "b"}], rows)
    with pytest.raises(WriteError, match=NO_SPACE + r".*report\.json"):
        write_report([{**first, "accuracy": 0.5}], report, title="t", reference="a")
    assert {path: path.read_bytes() for path in before} == before
    assert not [name for name in disk.files() if name.endswith(".tmp")]
    disk.free()
    assert [row["name"] for row in write_rows([{**first, "name": "b"}], rows)] == ["a", "b"]


def test_rows_that_are_no_json_list_are_named(tmp_path: Path) -> None:
    rows = tmp_path / "rows.json"
    rows.write_text("")
    with pytest.raises(ValueError, match=r"rows\.json holds no JSON list of benchmark rows .* delete it"):
        write_rows([{"name": "a"}], rows)


def _mlp(seed: int, hidden: int = 16) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, hidden), nn.ReLU(), nn.Linear(hidden, 3))


def test_save_pruned_on_a_full_disk_keeps_the_previous_folder_whole(disk: Disk) -> None:
    folder = disk.folder / "student"
    save_pruned(_mlp(0), folder)
    before = disk.files(folder)
    disk.fill()
    with pytest.raises(WriteError, match=NO_SPACE + r".*student"):
        save_pruned(_mlp(1, hidden=256), folder)  # larger: written in place, it would be cut short
    disk.free()
    assert disk.files() == ["student", *(f"student/{name}" for name in before)]
    reloaded = load_pruned(_mlp(2), folder)
    for ours, saved in zip(reloaded.state_dict().values(), _mlp(0).state_dict().values(), strict=True):
        assert torch.equal(ours, saved)


def _interrupt_after_writing_half(output_argument: int):
    """A writer that leaves half a file at its output path, then is interrupted (Ctrl-C)."""

    def write(*args, **kwargs) -> None:
        Path(args[output_argument]).write_bytes(b"half a graph")
        raise KeyboardInterrupt

    return write


def test_an_interrupted_int8_export_leaves_no_partial_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    graph = export_onnx(_mlp(0), OnnxExportConfig(), torch.randn(2, 4), tmp_path / "model.onnx")
    quantized = tmp_path / "model_quantized.onnx"
    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", _interrupt_after_writing_half(1))
    with pytest.raises(KeyboardInterrupt):
        quantize_onnx(graph, quantized, OrtQuantConfig())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]
    monkeypatch.undo()
    previous = quantize_onnx(graph, quantized, OrtQuantConfig()).read_bytes()
    monkeypatch.setattr(onnxruntime.quantization, "quantize_dynamic", _interrupt_after_writing_half(1))
    with pytest.raises(KeyboardInterrupt):
        quantize_onnx(graph, quantized, OrtQuantConfig())
    assert quantized.read_bytes() == previous
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model_quantized.onnx"]


def test_an_interrupted_onnx_export_keeps_the_previous_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = export_onnx(_mlp(0), OnnxExportConfig(), torch.randn(2, 4), tmp_path / "model.onnx")
    previous = path.read_bytes()
    monkeypatch.setattr(torch.onnx, "export", _interrupt_after_writing_half(2))
    with pytest.raises(KeyboardInterrupt):
        export_onnx(_mlp(1), OnnxExportConfig(), torch.randn(2, 4), path)
    assert path.read_bytes() == previous
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def test_a_staged_graph_arrives_with_its_external_data_under_their_final_names(tmp_path: Path) -> None:
    graph = onnx.load(str(export_onnx(_mlp(0), OnnxExportConfig(), torch.randn(2, 4), tmp_path / "exported.onnx")))
    path = tmp_path / "model.onnx"
    with staged_file(path) as staged:  # as an exporter of a graph over 2 GB writes it: data in a file named after it
        onnx.save(graph, str(staged), save_as_external_data=True, location="model.onnx.data", size_threshold=0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported.onnx", "model.onnx", "model.onnx.data"]
    assert all(
        t.data_location == onnx.TensorProto.EXTERNAL
        for t in onnx.load(str(path), load_external_data=False).graph.initializer
    )
    expected = {
        t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "exported.onnx")).graph.initializer
    }
    for tensor in onnx.load(str(path)).graph.initializer:  # reads model.onnx.data beside it
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(tensor), expected[tensor.name])
