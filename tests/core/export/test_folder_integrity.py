"""Export folders that cannot mix models: a re-export replaces the folder whole, a foreign folder is refused unless
``overwrite``, and ``load_exported`` refuses a graph that another export wrote."""

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_text import INTENTS, write_bert, write_tokenizer

from lightning_distill.core.export import export_text_classifier, load_exported
from lightning_distill.core.export.integrity import ExportMismatchError

TEXTS = ["book a flight to the sun", "what is the weather", "play the song", "rain rain rain"]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    """Two tiny BERT classifiers of the same labels that predict differently (seeds 0 and 1), and their tokenizer."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    root = tmp_path_factory.mktemp("models")
    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(root / "tokenizer"))
    pair = []
    for seed in (0, 1):
        folder = write_bert(root / f"bert{seed}", labels=INTENTS, seed=seed)
        pair.append(AutoModelForSequenceClassification.from_pretrained(folder).eval())
    return pair[0], pair[1], tokenizer


def _logits(model, tokenizer) -> torch.Tensor:
    with torch.no_grad():
        return model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits


def _export(model, tokenizer, folder: Path, graphs, **options):
    return export_text_classifier(model, tokenizer, folder, TEXTS, graphs=graphs, max_length=16, **options)


def test_a_reexport_with_fewer_graphs_cannot_serve_the_old_model(models, tmp_path: Path) -> None:
    model_a, model_b, tokenizer = models
    folder = tmp_path / "export"
    _export(model_a, tokenizer, folder, ["fp32", "int8"])
    written = _export(model_b, tokenizer, folder, ["fp32"])
    assert written == {"fp32": folder / "model.onnx"}
    assert not (folder / "model_quantized.onnx").exists()  # A's int8 graph went with A's folder
    with pytest.raises(FileNotFoundError, match=r"holds no graph 'model_quantized.onnx'; it holds \['model.onnx'\]"):
        load_exported(folder)
    served = torch.from_numpy(load_exported(folder, "model.onnx").logits(TEXTS))
    off_b = (served - _logits(model_b, tokenizer)).abs().max()
    off_a = (served - _logits(model_a, tokenizer)).abs().max()
    assert off_b < 1e-5 < 1e-3 < off_a  # B's model, not A's (untrained: logits of order 1e-2)
    assert [p.name for p in tmp_path.iterdir()] == ["export"]  # no temporary left beside it


def test_a_graph_of_another_export_is_refused_by_name(models, tmp_path: Path) -> None:
    model_a, model_b, tokenizer = models
    _export(model_a, tokenizer, tmp_path / "a", ["fp32", "int8"])
    _export(model_b, tokenizer, tmp_path / "b", ["fp32"])
    info = json.loads((tmp_path / "b" / "export_info.json").read_text())
    assert info["format"] == "lightning-distill/export" and len(info["export_id"]) == 16
    assert {"model.onnx", "config.json", "tokenizer_config.json"} <= set(info["files"])
    shutil.copy(tmp_path / "a" / "model_quantized.onnx", tmp_path / "b")
    with pytest.raises(ExportMismatchError, match=r"model_quantized\.onnx' is not part of the export [0-9a-f]{16}"):
        load_exported(tmp_path / "b")
    shutil.copy(tmp_path / "a" / "model.onnx", tmp_path / "b")
    with pytest.raises(ExportMismatchError, match=r"b/model\.onnx' differs from the file the export"):
        load_exported(tmp_path / "b", "model.onnx")
    load_exported(tmp_path / "a")  # each export's own graphs load


def test_a_foreign_folder_is_refused_without_overwrite_and_replaced_with_it(models, tmp_path: Path) -> None:
    model_a, _, tokenizer = models
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"my": "settings"}')
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match=r"'.*mine' is not empty \(config\.json, notes\.txt\).*overwrite=True"):
        _export(model_a, tokenizer, folder, ["fp32"])
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "notes.txt"]
    assert (folder / "config.json").read_text() == '{"my": "settings"}'
    _export(model_a, tokenizer, folder, ["fp32"], overwrite=True)
    assert not (folder / "notes.txt").exists() and "id2label" in json.loads((folder / "config.json").read_text())
    (tmp_path / "file").write_text("")
    with pytest.raises(FileExistsError, match=r"'.*file' is a file"):
        _export(model_a, tokenizer, tmp_path / "file", ["fp32"], overwrite=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    _export(model_a, tokenizer, empty, ["fp32"])
    assert load_exported(empty, "model.onnx")(TEXTS[:1])[0] in INTENTS
