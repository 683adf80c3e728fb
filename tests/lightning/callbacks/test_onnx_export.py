"""OnnxExport: float, optimized and int8 ONNX files of the trained model, checked against PyTorch on real batches."""

import json

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from conftest import tiny_trainer
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.export import (
    OnnxExportConfig,
    OrtQuantConfig,
    create_session,
    onnx_predictor,
    read_label_names,
)
from lightning_distill.core.models import MLP
from lightning_distill.lightning.callbacks import OnnxExport
from lightning_distill.lightning.modules import ClassifierModule


def loader(n: int = 96, batch_size: int = 16, seed: int = 1) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=generator)
    return DataLoader(TensorDataset(x, x[:, :3].argmax(1)), batch_size=batch_size)


class Data(pl.LightningDataModule):
    id2label = {0: "left", 1: "middle", 2: "right"}

    def train_dataloader(self) -> DataLoader:
        return loader()

    def val_dataloader(self) -> DataLoader:
        return loader(seed=2)


def test_mlp_files_parity_and_labels(tmp_path):
    torch.manual_seed(0)
    module = ClassifierModule(MLP(num_classes=3, in_features=20, hidden_sizes=[16]), learning_rate=0.02)
    callback = OnnxExport(quantization=OrtQuantConfig(mode="static", calibration_batches=2), checkpoint="last")
    tiny_trainer(max_epochs=2, callbacks=[callback], default_root_dir=tmp_path).fit(module, datamodule=Data())
    folder = tmp_path / "onnx"
    assert {p.name for p in folder.iterdir()} == {
        "model.onnx",
        "model.optimized.onnx",
        "model.int8.onnx",
        "model.int8.report.json",
        "export.json",
    }
    report = json.loads((folder / "export.json").read_text())
    assert report["parity"]["max_abs_diff"] <= 1e-4 and report["parity"]["num_examples"] == 64
    for name in ("model.onnx", "model.optimized.onnx", "model.int8.onnx"):
        assert read_label_names(folder / name) == Data.id2label
    x = next(iter(loader(seed=3)))[0]
    expected = module.model.eval()(x).detach().numpy()
    assert np.abs(onnx_predictor(create_session(folder / "model.onnx"))(x) - expected).max() <= 1e-4
    int8 = onnx_predictor(create_session(folder / "model.int8.onnx"))(x)
    assert (int8.argmax(-1) == expected.argmax(-1)).mean() >= 0.9
    # each file was loaded back and run; the int8 summary lists both weight matrices as quantized
    assert set(report["checks"]) == {"onnx", "optimized", "int8"} and report["checks"]["int8"]["num_examples"] == 16
    summary = json.loads((folder / "model.int8.report.json").read_text())
    assert [(layer["name"], layer["status"]) for layer in summary["layers"]] == [
        ("model.hidden.0.weight", "quantized"),
        ("model.classifier.weight", "quantized"),
    ]


def test_tiny_bert_with_dict_batches(tmp_path):
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    config = BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=100, num_labels=3
    )
    ids = torch.randint(5, 100, (32, 10))
    mask = torch.ones_like(ids)
    mask[::2, 7:] = 0
    rows = [{"input_ids": i, "attention_mask": m, "labels": i[0] % 3} for i, m in zip(ids, mask, strict=True)]
    module = ClassifierModule(BertForSequenceClassification(config), learning_rate=1e-3)
    callback = OnnxExport(
        OnnxExportConfig(opset=17),
        quantization=OrtQuantConfig(op_types=["MatMul"]),
        parity_batches=2,
        checkpoint="last",
    )
    trainer = tiny_trainer(max_epochs=1, callbacks=[callback], default_root_dir=tmp_path)
    trainer.fit(module, DataLoader(rows, batch_size=8), DataLoader(rows, batch_size=8))
    session = create_session(tmp_path / "onnx" / "model.onnx")
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    assert session.get_inputs()[0].shape == ["batch", "sequence"]
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["parity"]["max_abs_diff"] <= 1e-4
    assert callback.artifacts["int8"].is_file()
    # the summary: the 12 encoder MatMul weights (named by their node) and the 2 heads (Gemm, which ORT's
    # pre-processing turns into MatMul) in int8; the 3 embeddings (Gather) left in float, with the reason
    layers = callback.report.layers
    quantized = [layer.name for layer in layers if layer.status == "quantized"]
    assert len(quantized) == 14 and "/model/bert/encoder/layer.0/attention/self/query/MatMul" in quantized
    assert [(layer.layer, layer.reason) for layer in callback.report.skipped] == 3 * [
        ("Gather", "its operator Gather is not in op_types ['MatMul']")
    ]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="parity_batches must be an int >= 1; got 0"):
        OnnxExport(parity_batches=0)
    with pytest.raises(ValueError, match=r"model_attribute must be 'auto', 'self' .* got ''"):
        OnnxExport(model_attribute="")
