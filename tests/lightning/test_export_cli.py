"""``lightning-distill export`` of a tiny BERT checkpoint, and ``benchmark --artifact`` on what it wrote."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_trainer
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer

from lightning_distill.lightning.cli import DistillCLI
from lightning_distill.lightning.main import main


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A text config of a tiny BERT classifier and a checkpoint of it trained a few epochs on the tiny intents."""
    root = tmp_path_factory.mktemp("export_cli")
    files = write_data(root / "data")
    config = {
        "seed_everything": 0,
        "model": {
            "class_path": "lightning_distill.lightning.modules.ClassifierModule",
            "init_args": {
                "model": {
                    "class_path": "lightning_distill.core.models.TransformerClassifier",
                    "init_args": {"checkpoint": write_bert(root / "bert", labels=INTENTS)},
                },
                "learning_rate": 0.01,
            },
        },
        "data": {
            "class_path": "lightning_distill.lightning.data.TextClassificationDataModule",
            "init_args": {
                "tokenizer": write_tokenizer(root / "tokenizer"),
                "data_files": files,
                "label_column": "intent",
                "max_length": 16,
                "batch_size": 8,
            },
        },
        "trainer": {"logger": False, "enable_checkpointing": False, "enable_progress_bar": False},
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = DistillCLI(args=["--config", str(path)], run=False)
    tiny_trainer(max_epochs=4).fit(cli.model, cli.datamodule)
    ckpt = root / "trained.ckpt"
    torch.save({"state_dict": cli.model.state_dict()}, ckpt)
    return path, ckpt


def test_export_then_benchmark_the_folder_and_its_onnx_like_the_checkpoint(trained, tmp_path: Path) -> None:
    config, ckpt = trained
    folder, rows_file = tmp_path / "student", tmp_path / "rows.json"
    export = ["export", "--config", str(config), "--ckpt_path", str(ckpt), "--folder", str(folder)]
    main([*export, "--measure", "true", "--iterations", "3", "--quantization", "avx512_vnni"])
    assert json.loads((folder / "config.json").read_text())["id2label"] == {"0": "travel", "1": "weather", "2": "music"}
    info = json.loads((folder / "export_info.json").read_text())
    assert info["quantization"]["per_channel"] and info["provenance"]["weights"] == str(ckpt)

    bench = ["benchmark", "--config", str(config), "--output", str(rows_file), "--iterations", "3"]
    main([*bench, "--ckpt_path", str(ckpt), "--name", "checkpoint"])
    main([*bench, "--artifact", str(folder / "model.onnx"), "--name", "onnx file"])
    main([*bench, "--artifact", str(folder), "--graph", "model.onnx", "--name", "folder fp32"])
    main([*bench, "--artifact", str(folder), "--name", "folder int8"])
    rows = {row["name"]: row for row in json.loads(rows_file.read_text())}
    reference = rows["checkpoint"]
    assert reference["accuracy"] > 0.5  # trained: better than chance (1/3)
    for name in ("onnx file", "folder fp32", "folder int8"):
        assert rows[name].keys() == reference.keys(), name
        assert rows[name]["num_examples"] == reference["num_examples"] == 12
    assert rows["onnx file"]["accuracy"] == rows["folder fp32"]["accuracy"] == reference["accuracy"]
    assert abs(rows["folder int8"]["accuracy"] - reference["accuracy"]) <= 1 / 12 + 1e-9
    assert rows["folder int8"]["weights"] == str(folder) and rows["folder int8"]["params"] == reference["params"]
    assert info["measurements"]["model.onnx"]["accuracy"] == reference["accuracy"]


def test_export_and_artifact_benchmark_refuse_bad_arguments_before_building(
    trained, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    config, _ = trained
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--config", str(config), "--folder", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    assert "export needs the trained weights: pass --ckpt_path CHECKPOINT" in capsys.readouterr().err
    bench = ["benchmark", "--config", str(config), "--output", str(tmp_path / "b.json")]
    with pytest.raises(SystemExit):
        main([*bench, "--artifact", str(tmp_path / "missing.onnx")])
    assert "missing.onnx does not exist" in capsys.readouterr().err
    (tmp_path / "model.bin").write_bytes(b"")
    with pytest.raises(SystemExit):
        main([*bench, "--artifact", str(tmp_path / "model.bin")])
    assert "an artifact is an export folder, an .onnx file or a .pt" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "b.json").exists()


def test_export_refuses_a_foreign_folder_before_loading_and_overwrite_replaces_it(trained, tmp_path: Path) -> None:
    config, ckpt = trained
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "settings"}')
    export = [
        "export",
        "--config",
        str(config),
        "--ckpt_path",
        str(ckpt),
        "--folder",
        str(folder),
        "--graphs",
        "[fp32]",
    ]
    with pytest.raises(FileExistsError, match=r"mine' is not empty \(config\.json\).*--overwrite true"):
        main(export)
    assert (folder / "config.json").read_text() == '{"my": "settings"}'
    main([*export, "--overwrite", "true"])
    assert sorted(p.name for p in folder.glob("*.onnx")) == ["model.onnx"]
    assert "id2label" in json.loads((folder / "config.json").read_text())
