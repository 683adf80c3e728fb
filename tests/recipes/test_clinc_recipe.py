"""recipes/clinc_offline.py end to end on a tiny BERT and tiny intent data, and its checks of missing inputs."""

import importlib.util
import json
import os
import re
from pathlib import Path

import pytest
from conftest import ROOT
from tiny_text import INTENTS, write_bert, write_data, write_distilbert, write_tokenizer


def _load_recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def tiny_inputs(tmp_path: Path) -> list[str]:
    """Options pointing the offline recipe at a tiny 4-layer BERT, its tokenizer and 3-intent data in tmp_path."""
    # 1,000 tokens: a word table large enough that 4 bits save more bytes than their unpacking nodes take
    tokenizer = write_tokenizer(tmp_path / "tokenizer", extra_words=981)
    model = write_bert(tmp_path / "bert", vocab_size=1000, layers=4, hidden=32, heads=4)
    write_data(tmp_path / "data", sizes=(96, 24, 24))
    return [
        "--data",
        str(tmp_path / "data"),
        "--model",
        model,
        "--tokenizer",
        tokenizer,
        "--layers",
        "0",
        "2",
        "--runs",
        str(tmp_path / "runs"),
        "--teacher-epochs",
        "2",
        "--epochs",
        "1",
        "--bench-iterations",
        "5",
        "--offset-class",
        "music",
    ]


def test_offline_recipe_end_to_end_then_skips_finished_steps(tiny_inputs: list[str], tmp_path: Path, capsys) -> None:
    recipe = _load_recipe("clinc_offline")
    recipe.main(tiny_inputs)
    folder = tmp_path / "runs" / "clinc_offline"
    rows = {r["name"]: r for r in json.loads((folder / "report.json").read_text())}
    assert list(rows) == [
        "teacher fp32",
        "student fp32",
        "student pruned fp32",
        "student pruned fp32 (before offset)",
        "student pruned int8 (PyTorch dynamic)",
        "student pruned ONNX fp32",
        "student pruned ONNX fp32 (ORT optimized)",
        "student pruned ONNX int8 (ORT dynamic)",
        "student pruned ONNX int8 + 4-bit embeddings",
        "student ONNX int8 + 4-bit embeddings",
    ]
    teacher, student, pruned = rows["teacher fp32"], rows["student fp32"], rows["student pruned fp32"]
    assert all(r["num_examples"] == 24 and 0.0 <= r["accuracy"] <= 1.0 for r in rows.values())
    # 2 of 4 layers, then half the heads and FFN neurons of each: fewer parameters at every stage
    assert teacher["params"] > student["params"] > pruned["params"]
    # the ONNX graphs hold the pruned student's weights and predict like it
    assert rows["student pruned ONNX fp32"]["accuracy"] == pytest.approx(pruned["accuracy"])
    assert rows["student pruned ONNX fp32 (ORT optimized)"]["accuracy"] == pytest.approx(pruned["accuracy"])
    assert rows["student pruned ONNX int8 (ORT dynamic)"]["size_mb"] < rows["student pruned ONNX fp32"]["size_mb"]
    emb4 = rows["student pruned ONNX int8 + 4-bit embeddings"]
    assert emb4["size_mb"] < rows["student pruned ONNX int8 (ORT dynamic)"]["size_mb"]
    assert emb4["size_mb"] < rows["student ONNX int8 + 4-bit embeddings"]["size_mb"]
    assert all(r["reference"] == "teacher fp32" for r in rows.values())
    assert teacher["speedup_vs_reference"] == 1.0

    # logits of the saved pruned student, reloaded, against its ONNX graph on the test texts
    import numpy as np
    import torch
    from transformers import AutoTokenizer

    from lightning_distill.core.export import create_session
    from lightning_distill.recipes.text import load_pruned_classifier

    # the offset step: each student predicts "music" on as many validation texts as the teacher, its logit of
    # "music" moved by the recorded offset and the others unchanged; the later steps use the offset students
    offset = json.loads((folder / "offset" / "done.json").read_text())["result"]
    assert offset["class"] == "music" and offset["index"] == INTENTS.index("music")
    assert offset["validation_texts"] == 24
    for name in ("student", "student pruned"):
        assert offset[name]["predicted_after"] == offset["teacher_predicted"]
    assert rows["student pruned fp32 (before offset)"]["params"] == pruned["params"]
    assert offset["student pruned"]["source"] == str(folder / "prune" / "student")
    student_folder = folder / "offset" / "student_pruned"
    texts = ["book a flight to the sun", "what is the weather", "play a song"]
    encoded = AutoTokenizer.from_pretrained(str(student_folder))(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = load_pruned_classifier(student_folder)(**encoded).logits.numpy()
        before = load_pruned_classifier(folder / "prune" / "student")(**encoded).logits.numpy()
    moved = np.zeros(len(INTENTS), dtype=np.float32)
    moved[INTENTS.index("music")] = offset["student pruned"]["offset"]
    np.testing.assert_allclose(expected - before, np.broadcast_to(moved, expected.shape), atol=1e-5)
    export = json.loads((folder / "export" / "done.json").read_text())["result"]
    session = create_session(export["onnx"])
    feed = {i.name: encoded[i.name].numpy() for i in session.get_inputs()}
    np.testing.assert_allclose(session.run(None, feed)[0], expected, atol=1e-4)
    # the export folder holds these graphs, loaded back with the pruned student's labels
    from lightning_distill.core.export import load_exported

    assert Path(export["onnx"]) == Path(export["folder"]) / "model.onnx"
    labels = load_exported(export["folder"], "model.onnx")(texts)
    assert labels == [INTENTS[i] for i in expected.argmax(-1).tolist()]

    shapes = json.loads((folder / "prune" / "student" / "pruned.json").read_text())
    assert set(shapes["attention_heads"].values()) == {2}  # 4 heads -> 2 in both kept layers
    assert export["embedding_int8"] is True  # ORT quantized the embedding's Gather
    markdown = (folder / "report.md").read_text()
    assert markdown.startswith("# CLINC150 offline")
    assert "No target given" in markdown and "--teacher-epochs 2" in markdown
    assert (folder / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    settings = json.loads((folder / "report_settings.json").read_text())
    assert settings["settings"]["epochs"] == 1
    # the machine that measured the latencies is named in both, from the benchmark step's own record
    machine = json.loads((folder / "benchmark" / "done.json").read_text())["result"]["machine"]
    assert settings["machine"] == machine and machine["torch_cpu_capability"]
    assert f"Measured on: {machine['cpu']}, {machine['logical_cpus']} CPUs" in markdown
    # no target given: the final artifact is the first candidate, the most compressed
    target = settings["target"]
    candidates = target["candidates"]
    assert [c["artifact"] for c in candidates] == [
        "student pruned ONNX int8 + 4-bit embeddings",
        "student pruned ONNX int8 (ORT dynamic)",
        "student ONNX int8 + 4-bit embeddings",
    ]
    assert target["artifact"] == candidates[0]["artifact"] and all(c["met"] for c in candidates)
    assert "speedup_met" not in candidates[0]
    assert "| student ONNX int8 + 4-bit embeddings |" in markdown
    for step in ("teacher", "distill", "prune"):
        assert (folder / step / "checkpoints" / "best.ckpt").is_file()

    capsys.readouterr()
    recipe.main(tiny_inputs)  # a rerun skips every finished step
    assert capsys.readouterr().out.count("done before, skipped") == 8

    # each step recorded the steps whose results it read, and the settings it depends on
    def inputs(step: str) -> dict:
        return json.loads((folder / step / "done.json").read_text())["inputs"]

    assert list(inputs("distill")["reads"]) == ["teacher"]
    assert list(inputs("prune")["reads"]) == ["distill", "teacher"]
    assert list(inputs("offset")["reads"]) == ["distill", "prune", "teacher"]
    assert list(inputs("benchmark")["reads"]) == ["export", "offset", "quantize", "teacher"]
    assert inputs("distill")["options"]["epochs"] == 1 and "bench_iterations" not in inputs("distill")["options"]
    # another option redoes the first step that depends on it and every step after it, and nothing before it
    recipe.main([*tiny_inputs, "--bench-iterations", "3"])
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 6
    assert "benchmark: redone: its options changed since it ran (bench_iterations: 5 before, 3 now)" in out
    assert "report: redone: step 'benchmark' ran before it in this run" in out
    assert "`bench_iterations`: `3`" in (folder / "report.md").read_text()

    # the teacher redone alone (--force --only teacher): the next plain run redoes every step after it, and the
    # report shows the new teacher
    longer = [*tiny_inputs, "--teacher-epochs", "3"]
    recipe.main([*longer, "--force", "--only", "teacher"])
    out = (
        capsys.readouterr().out
    )  # the teacher's checkpoint changed, and its saved model unless the best epoch is the same
    assert re.search(r"distill: not in --only, left as it is although teacher's (checkpoint|model)\b", out)
    recipe.main(longer)
    out = capsys.readouterr().out
    assert out.count("done before, skipped") == 1
    assert re.search(r"distill: redone: teacher's (checkpoint|model)[a-z ]* changed since this step ran", out)
    teacher_result = json.loads((folder / "teacher" / "done.json").read_text())["result"]
    report_settings = json.loads((folder / "report_settings.json").read_text())
    assert report_settings["settings"]["teacher_epochs"] == 3
    # the kept record holds paths relative to the folder the recipe ran from, never the machine's absolute ones
    relative = {
        key: os.path.relpath(value, Path.cwd()) if key != "source" else value
        for key, value in teacher_result.items()
        if isinstance(value, str)
    }
    assert report_settings["steps"]["teacher"] == {**teacher_result, **relative}
    assert not any(str(v).startswith("/") for v in report_settings["steps"]["teacher"].values())

    # the offset turned off: the steps that used the offset students read distill and prune instead, so redo
    recipe.main([*longer, "--no-offset", "--only", "quantize"])
    out = capsys.readouterr().out
    assert re.search(r"quantize: redone: it now reads step '(distill|prune)', which it did not", out)

    # a fine-tuned teacher given as a Lightning checkpoint of the teacher config is loaded and saved as a folder
    checkpoint = folder / "teacher" / "checkpoints" / "best.ckpt"
    other = [*tiny_inputs, "--teacher", str(checkpoint), "--runs", str(tmp_path / "other"), "--only", "teacher"]
    recipe.main(other)
    saved = tmp_path / "other" / "clinc_offline" / "teacher" / "model"
    config = json.loads((saved / "config.json").read_text())
    assert config["num_hidden_layers"] == 4 and list(config["id2label"].values()) == INTENTS
    assert (saved / "tokenizer_config.json").is_file()


def test_offline_recipe_names_a_calibrate_class_the_data_lacks_before_training(
    tiny_inputs: list[str], tmp_path: Path
) -> None:
    from lightning_distill.recipes.engine import StepFailed

    args = [*tiny_inputs[: tiny_inputs.index("--offset-class")], "--offset-class", "oos"]
    with pytest.raises(StepFailed, match=r"offset_class 'oos' is not a label of the data \(3 labels: travel, w"):
        _load_recipe("clinc_offline").main(args)
    assert not (tmp_path / "runs" / "clinc_offline" / "teacher" / "checkpoints").exists()


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ("--data", r"--data \(train split\): .*nowhere/train.parquet does not exist"),
        ("--model", r"--model .*nowhere does not exist"),
        ("--teacher", r"--teacher .*nowhere does not exist"),
    ],
)
def test_offline_recipe_names_a_missing_input_before_training(
    tiny_inputs: list[str], tmp_path: Path, capsys, option: str, expected: str
) -> None:
    args = list(tiny_inputs)
    missing = str(tmp_path / "nowhere")
    if option in args:
        args[args.index(option) + 1] = missing
    else:
        args += [option, missing]
    with pytest.raises(SystemExit) as info:
        _load_recipe("clinc_offline").main(args)
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "missing inputs, nothing was run" in error
    assert len(__import__("re").findall(expected, error)) == 1
    assert not (tmp_path / "runs").exists()


def test_hub_recipe_on_local_folders_distills_and_exports_a_distilbert(tmp_path: Path) -> None:
    tokenizer = write_tokenizer(tmp_path / "tokenizer")
    teacher = write_bert(tmp_path / "teacher", layers=2, hidden=32, heads=4, labels=INTENTS)
    write_tokenizer(tmp_path / "teacher")  # a fine-tuned teacher folder carries its tokenizer
    write_data(tmp_path / "data", sizes=(96, 24, 24))
    student = write_distilbert(tmp_path / "student", layers=2, hidden=32)
    args = ["--teacher", teacher, "--student", student, "--tokenizer", tokenizer, "--dataset", str(tmp_path / "data")]
    args += ["--dataset-config", "none", "--runs", str(tmp_path / "runs"), "--epochs", "1", "--no-prune"]
    args += ["--offset-class", "weather"]
    _load_recipe("clinc").main([*args, "--only", "teacher", "distill", "offset", "export"])
    folder = tmp_path / "runs" / "clinc_recipe"
    assert json.loads((folder / "teacher" / "done.json").read_text())["result"]["model"] == teacher
    student_config = json.loads((folder / "distill" / "student" / "config.json").read_text())
    assert student_config["model_type"] == "distilbert" and list(student_config["id2label"].values()) == INTENTS
    export = json.loads((folder / "export" / "done.json").read_text())["result"]
    assert export["embedding_int8"] is True
    import onnx

    # DistilBERT takes no token_type_ids: the graph has only the inputs the model uses
    assert [i.name for i in onnx.load(export["onnx"]).graph.input] == ["input_ids", "attention_mask"]
    # without pruning the offset step offsets the distilled student alone, and the export is of that student
    offset = json.loads((folder / "offset" / "done.json").read_text())["result"]
    assert "student pruned" not in offset
    assert offset["student"]["predicted_after"] == offset["teacher_predicted"]
    # the final student's export folder loads back and labels texts as the offset student does
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from lightning_distill.core.export import load_exported

    texts = ["book a flight to the sun", "what is the weather", "play a song", "the rain", "hotel music"]
    student_folder = str(folder / "offset" / "student")
    encoded = AutoTokenizer.from_pretrained(student_folder)(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ids = AutoModelForSequenceClassification.from_pretrained(student_folder)(**encoded).logits.argmax(-1)
    assert load_exported(export["folder"], "model.onnx")(texts) == [INTENTS[i] for i in ids.tolist()]
    assert json.loads((Path(export["folder"]) / "config.json").read_text())["id2label"] == dict(
        (str(i), name) for i, name in enumerate(INTENTS)
    )


def test_hub_recipe_offline_fails_before_training_and_names_the_offline_recipe(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SystemExit) as info:
        _load_recipe("clinc").main(["--runs", str(tmp_path / "runs")])
    assert info.value.code == 2
    error = capsys.readouterr().err
    assert "HF_HUB_OFFLINE is set" in error and "transformersbook/bert-base-uncased-finetuned-clinc" in error
    assert "recipes/clinc_offline.py" in error
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize(
    ("prune_epochs", "batches", "limit", "expected"),
    [
        (8, 239, None, (79, 948, 79)),  # CLINC150: 12 points, the last within the first 4 of 8 epochs
        (1, 3, None, (1, 1, 1)),  # a tiny run: one point, inside the run
        (8, 239, 0.5, (39, 468, 39)),  # limit_train_batches as a fraction ...
        (8, 239, 20, (6, 72, 6)),  # ... or as a batch count
    ],
)
def test_prune_step_schedules_twelve_taylor_points_over_the_first_half(
    prune_epochs: int, batches: int, limit: float | None, expected: tuple[int, int, int]
) -> None:
    from lightning_distill.lightning.callbacks import StructuredPruning
    from lightning_distill.recipes.text import PRUNING_POINTS, TextRecipeSettings, gradual_pruning

    settings = TextRecipeSettings(
        configs="configs/clinc/offline",
        title="t",
        data={},
        tokenizer="tok",
        teacher="teacher",
        teacher_base=None,
        student_base=None,
        prune_epochs=prune_epochs,
        limit_train_batches=limit,
    )
    spec = gradual_pruning(settings, batches)
    args = spec["init_args"]
    assert (args["start"], args["end"], args["frequency"]) == expected
    callback = StructuredPruning(**args, verbose=False)  # the callback accepts the recipe's arguments as they are
    steps = prune_epochs * (min(batches, int(limit)) if isinstance(limit, int) else int(batches * (limit or 1)))
    assert len(callback.schedule.points()) == min(PRUNING_POINTS, steps // 2)
    assert callback.schedule.sparsity_at(args["end"]) == settings.sparsity
    assert 0 < args["start"] <= args["end"] <= steps // 2  # Taylor scores first; fully pruned by mid-run


def test_prune_step_refuses_a_run_too_short_to_prune_gradually() -> None:
    from lightning_distill.recipes.text import TextRecipeSettings, gradual_pruning

    settings = TextRecipeSettings("configs", "t", {}, "tok", "teacher", None, None, prune_epochs=1)
    with pytest.raises(ValueError, match=r"the prune step has 1 optimizer step\(s\).*raise --prune-epochs"):
        gradual_pruning(settings, 1)


def test_prune_importance_reaches_the_callback_and_is_checked() -> None:
    from lightning_distill.lightning.callbacks import StructuredPruning
    from lightning_distill.recipes.text import TextRecipeSettings, gradual_pruning

    base = dict(configs="c", title="t", data={}, tokenizer="tok", teacher="teacher", teacher_base=None)
    base["student_base"] = None
    assert gradual_pruning(TextRecipeSettings(**base), 239)["init_args"]["importance"] == "taylor"
    args = gradual_pruning(TextRecipeSettings(**base, prune_importance="l1"), 239)["init_args"]
    assert StructuredPruning(**args, verbose=False).importance == "l1"
    with pytest.raises(ValueError, match="prune_importance must be 'taylor' or 'l1', got 'random'"):
        TextRecipeSettings(**base, prune_importance="random")
