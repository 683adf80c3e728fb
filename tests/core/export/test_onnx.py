"""ONNX export: dynamic axes, names, label metadata, parity with PyTorch (max |logit diff| <= 1e-4), bad input."""

import numpy as np
import onnx
import pytest
import torch
from export_fixtures import BERT_LABELS, bert_logits
from torch import Tensor, nn

from lightning_distill.core.export import (
    OnnxExportConfig,
    OnnxParityError,
    check_parity,
    create_session,
    export_onnx,
    onnx_predictor,
    read_label_names,
)

# The shared fixtures (trained MNIST MLP, tiny BERT, their batches) live in export_fixtures.py.
pytest_plugins = ["export_fixtures"]

ATOL = 1e-4


def _inputs(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    return {k: v for k, v in batch.items() if k != "labels"}


def test_mlp_export_has_dynamic_batch_and_matches_pytorch(trained_mlp, mnist, calibration, tmp_path):
    path = export_onnx(
        trained_mlp, OnnxExportConfig(), mnist["test_x"][:4], tmp_path / "mlp.onnx", label_names=list("0123456789")
    )
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert read_label_names(path) == dict(enumerate("0123456789"))
    report = check_parity(path, trained_mlp, calibration, atol=ATOL)  # real validation batches of 64
    assert report.max_abs_diff <= ATOL and report.num_examples == 256
    predict = onnx_predictor(create_session(path))
    assert predict(mnist["test_x"][:1]).shape == (1, 10)
    assert np.abs(predict(mnist["test_x"][:100]) - trained_mlp(mnist["test_x"][:100]).detach().numpy()).max() <= ATOL


def test_bert_export_has_dynamic_batch_and_sequence_and_matches_pytorch(tiny_bert, bert_batches, tmp_path):
    path = export_onnx(tiny_bert, OnnxExportConfig(), _inputs(bert_batches[0]), tmp_path / "bert.onnx")
    session = create_session(path)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask", "token_type_ids"]
    assert all(i.shape == ["batch", "sequence"] for i in session.get_inputs())
    assert read_label_names(path) == dict(enumerate(BERT_LABELS))  # taken from the model's id2label
    # other batch sizes and lengths than the example, with padding
    report = check_parity(session, tiny_bert, bert_batches, atol=ATOL)
    assert report.max_abs_diff <= ATOL and report.num_batches == len(bert_batches)
    logits = onnx_predictor(session)(_inputs(bert_batches[2]))
    assert np.abs(logits - bert_logits(tiny_bert, bert_batches[2]).numpy()).max() <= ATOL


def test_dynamo_exporter_gives_the_same_graph_interface(trained_mlp, mnist, calibration, tmp_path):
    path = export_onnx(trained_mlp, OnnxExportConfig(dynamo=True), mnist["test_x"][:4], tmp_path / "mlp.onnx")
    session = create_session(path)
    assert [i.name for i in session.get_inputs()] == ["input"] and session.get_inputs()[0].shape[0] == "batch"
    assert check_parity(session, trained_mlp, calibration, atol=ATOL).max_abs_diff <= ATOL


def test_parity_beyond_tolerance_reports_the_difference_and_the_input(trained_mlp, mnist, tmp_path):
    path = export_onnx(trained_mlp, OnnxExportConfig(), mnist["test_x"][:2], tmp_path / "mlp.onnx")
    changed = MLPWithOffset(trained_mlp)
    with pytest.raises(
        OnnxParityError, match=r"differ by up to 0\.5 \(> atol 0\.0001\).*worst input: input shape \(2, 1, 28, 28\)"
    ):
        check_parity(path, changed, [mnist["test_x"][:2]], atol=ATOL)


class MLPWithOffset(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model(x) + 0.5


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 2)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        return self.linear(x * mask)


def test_forward_inputs_the_exporter_was_not_told_about_are_refused(tiny_bert, bert_batches, tmp_path):
    with pytest.raises(ValueError, match=r"forward takes inputs the exporter was not told about: \['mask'\]"):
        export_onnx(TwoInputs(), OnnxExportConfig(), torch.ones(1, 4), tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"forward takes inputs the exporter was not told about: \['mask'\]"):
        export_onnx(TwoInputs(), OnnxExportConfig(), {"x": torch.ones(1, 4)}, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match=r"TwoInputs\.forward does not take \['pixel_values'\]"):
        export_onnx(
            TwoInputs(),
            OnnxExportConfig(),
            {"x": torch.ones(1, 4), "mask": torch.ones(1, 4), "pixel_values": torch.ones(1, 4)},
            tmp_path / "m.onnx",
        )
    with pytest.raises(ValueError, match=r"input_names \['ids'\] do not match the example inputs"):
        export_onnx(tiny_bert, OnnxExportConfig(input_names=["ids"]), _inputs(bert_batches[0]), tmp_path / "m.onnx")


def test_bad_config_values_are_refused():
    with pytest.raises(ValueError, match="opset must be an int in \\[11, 21\\]; got 7"):
        OnnxExportConfig(opset=7)
    with pytest.raises(ValueError, match="output_names must be a non-empty list of distinct names"):
        OnnxExportConfig(output_names=[])
    with pytest.raises(ValueError, match="parity_atol must be > 0"):
        OnnxExportConfig(parity_atol=0)
