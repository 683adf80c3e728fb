"""Result records lose the machine's absolute paths, whether a whole value or a word of a command."""

from pathlib import Path

from lightning_distill.core.benchmark import relative_paths


def test_absolute_paths_become_relative_to_the_start_folder(tmp_path: Path) -> None:
    root = tmp_path / "project"
    record = {
        "output": str(root / "benchmarks" / "results" / "x.json"),
        "data": str(tmp_path / "shared" / "data"),
        str(root / "runs" / "a"): [str(root / "runs" / "b"), 1.5, None, True],
        "command": f"python bench.py --teacher {root}/runs/t --out={root}/o.json",
    }
    assert relative_paths(record, root) == {
        "output": "benchmarks/results/x.json",
        "data": "../shared/data",
        "runs/a": ["runs/b", 1.5, None, True],
        "command": "python bench.py --teacher runs/t --out=o.json",
    }


def test_text_that_is_not_a_path_is_unchanged(tmp_path: Path) -> None:
    texts = ["https://huggingface.co/bert-base-uncased", "1/8 of the size", "tokens/s", "relative/path", "a / b"]
    assert relative_paths(texts, tmp_path) == texts
