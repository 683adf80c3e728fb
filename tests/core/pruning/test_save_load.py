import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from test_structured import tiny_bert
from torch import nn
from transformers import AutoConfig, AutoModelForSequenceClassification

from lightning_distill.core.models import MLP
from lightning_distill.core.pruning import load_pruned, prune_structured, save_pruned


def test_pruned_mlp_saves_reloads_and_exports_to_onnx(tmp_path: Path) -> None:
    model = MLP(num_classes=3, in_features=20, hidden_sizes=[16, 8]).eval()
    prune_structured(model, 0.5)
    save_pruned(model, tmp_path / "mlp")
    meta = json.loads((tmp_path / "mlp" / "pruned.json").read_text())
    assert meta["format"] == "lightning-distill-pruned" and meta["version"] == 1
    assert meta["linear_shapes"] == {"hidden.0": [8, 20], "hidden.2": [4, 8], "classifier": [3, 4]}
    assert meta["parameters"] == 219
    reloaded = load_pruned(MLP(num_classes=3, in_features=20, hidden_sizes=[16, 8]).eval(), tmp_path / "mlp")
    x = torch.randn(4, 20)
    assert torch.equal(reloaded(x), model(x))

    path = tmp_path / "mlp.onnx"
    torch.onnx.export(reloaded, (x,), str(path), dynamo=False, input_names=["x"], output_names=["logits"])
    onnx_out = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    np.testing.assert_allclose(onnx_out, model(x).detach().numpy(), atol=1e-5)


class _Logits(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits


def test_pruned_bert_reloads_from_its_folder_and_exports_to_onnx(tmp_path: Path) -> None:
    model = tiny_bert()
    prune_structured(model, 0.5)
    save_pruned(model, tmp_path / "bert")
    meta = json.loads((tmp_path / "bert" / "pruned.json").read_text())
    assert meta["attention_heads"]["bert.encoder.layer.1.attention.self"] == 2
    assert meta["linear_shapes"]["bert.encoder.layer.0.output.dense"] == [32, 32]
    config = AutoConfig.from_pretrained(tmp_path / "bert")  # the unpruned architecture, rebuilt offline
    reloaded = load_pruned(AutoModelForSequenceClassification.from_config(config).eval(), tmp_path / "bert")
    assert reloaded.bert.encoder.layer[0].attention.self.num_attention_heads == 2
    ids = torch.randint(0, 100, (2, 9))
    mask = torch.ones_like(ids)
    expected = _Logits(model)(ids, mask)
    assert torch.allclose(_Logits(reloaded)(ids, mask), expected, atol=1e-6)

    path = tmp_path / "bert.onnx"
    wrapper = _Logits(reloaded).eval()
    torch.onnx.export(
        wrapper, (ids, mask), str(path), dynamo=False, input_names=["input_ids", "attention_mask"], output_names=["y"]
    )
    onnx_out = ort.InferenceSession(str(path)).run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    np.testing.assert_allclose(onnx_out[0], expected.detach().numpy(), atol=1e-5)


def test_load_pruned_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"model\.pt does not exist"):
        load_pruned(MLP(), tmp_path)
    model = MLP(num_classes=3, in_features=20, hidden_sizes=[16])
    save_pruned(model, tmp_path / "m")
    with pytest.raises(ValueError, match=r"a Linear 'hidden\.0' that the model does not have"):
        load_pruned(nn.Sequential(nn.Linear(20, 3)), tmp_path / "m")
    (tmp_path / "m" / "pruned.json").write_text(json.dumps({"format": "other", "version": 1}))
    with pytest.raises(ValueError, match="is not a lightning-distill-pruned file"):
        load_pruned(model, tmp_path / "m")
