"""Each quantization config on a trained MNIST MLP and on a tiny BERT, compared with the float model in numbers.

Tolerances (500 MNIST test images; random tiny BERT with logits of about 0.1 to 1):
- int8 (dynamic, static, bitsandbytes int8): top-1 agreement with float >= 97%, accuracy within 1.5 points,
  max |logit difference| <= 10% of the largest float logit; tiny BERT: max |logit difference| <= 0.02.
- 4-bit (nf4, fp4): agreement >= 85%, accuracy within 3 points; tiny BERT: max |logit difference| <= 0.05.
"""

import copy

import pytest
import torch
from quant_helpers import accuracy, bert_logits
from torch import nn

from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    StaticQuantConfig,
    _eager,
    quantize,
)

# The shared fixtures (trained MNIST MLP, tiny BERT, their batches) live in quant_helpers.py.
pytest_plugins = ["quant_helpers"]

INT8 = [
    DynamicQuantConfig(),
    StaticQuantConfig(backend="x86"),
    StaticQuantConfig(backend="fbgemm"),
    StaticQuantConfig(backend="qnnpack"),
    StaticQuantConfig(backend="onednn"),
    BitsAndBytesConfig(weights="int8"),
    DynamicQuantConfig(engine="torchao"),
    StaticQuantConfig(engine="torchao"),
]
FOUR_BIT = [BitsAndBytesConfig(weights="nf4"), BitsAndBytesConfig(weights="fp4")]


def _calibration_for(config, batches):
    return batches if isinstance(config, StaticQuantConfig) else None


@pytest.mark.parametrize(
    "config",
    INT8 + FOUR_BIT,
    ids=lambda c: f"{type(c).__name__}-{getattr(c, 'backend', '')}{getattr(c, 'weights', '')}"
    f"{'-torchao' if getattr(c, 'engine', '') == 'torchao' else ''}",
)
def test_mlp_outputs_stay_close_to_float(config, trained_mlp, mnist, calibration):
    before = copy.deepcopy(trained_mlp.state_dict())
    quantized = quantize(trained_mlp, config, calibration_data=_calibration_for(config, calibration))
    x, y = mnist["test_x"], mnist["test_y"]
    with torch.no_grad():
        expected, actual = trained_mlp(x), quantized(x)
    agreement = float((expected.argmax(-1) == actual.argmax(-1)).float().mean())
    drop = accuracy(trained_mlp, x, y) - accuracy(quantized, x, y)
    four_bit = config in FOUR_BIT
    assert agreement >= (0.85 if four_bit else 0.97)
    assert drop <= (0.03 if four_bit else 0.015)
    if not four_bit:
        assert (actual - expected).abs().max() <= 0.1 * expected.abs().max()
    # the float model is untouched and the result knows its config
    assert all(torch.equal(before[k], v) for k, v in trained_mlp.state_dict().items())
    assert quantized.quantization_config == config
    assert not quantized.training


def test_static_mlp_runs_end_to_end_in_int8_with_fused_linear_relu(trained_mlp, calibration):
    quantized = quantize(trained_mlp, StaticQuantConfig(), calibration_data=calibration)
    names = {name: type(m).__name__ for name, m in quantized.named_modules()}
    assert names["hidden.0"] == "LinearReLU" and names["hidden.2"] == "LinearReLU"
    assert names["classifier"] == "Linear" and names["quant_stub"] == "Quantize"
    assert type(quantized.classifier).__module__.startswith("torch.ao.nn.quantized")


def test_static_skip_keeps_layers_in_float(trained_mlp, calibration, mnist):
    quantized = quantize(trained_mlp, StaticQuantConfig(skip_modules=["classifier"]), calibration_data=calibration)
    assert type(quantized.classifier) is nn.Linear
    assert type(quantized.hidden[0]).__name__ == "QuantWrapper"
    assert (
        accuracy(trained_mlp, mnist["test_x"], mnist["test_y"]) - accuracy(quantized, mnist["test_x"], mnist["test_y"])
        <= 0.015
    )


@pytest.mark.parametrize(
    "config",
    [DynamicQuantConfig(), StaticQuantConfig(calibration_batches=2), BitsAndBytesConfig(), *FOUR_BIT[:1]],
    ids=["dynamic", "static", "bnb-int8", "bnb-nf4"],
)
def test_tiny_bert_outputs_stay_close_to_float(config, tiny_bert, bert_batches):
    quantized = quantize(tiny_bert, config, calibration_data=_calibration_for(config, bert_batches))
    tolerance = 0.05 if config in FOUR_BIT else 0.02
    for batch in bert_batches:
        diff = (bert_logits(quantized, batch) - bert_logits(tiny_bert, batch)).abs().max()
        assert diff <= tolerance
    assert not any(type(m) is nn.Linear for m in quantized.modules())  # every float Linear was replaced


def test_static_bert_quantizes_each_linear_between_its_own_stubs(tiny_bert, bert_batches):
    quantized = quantize(tiny_bert, StaticQuantConfig(calibration_batches=2), calibration_data=bert_batches)
    wrapped = [n for n, m in quantized.named_modules() if type(m).__name__ == "QuantWrapper"]
    assert len(wrapped) == 2 * 6 + 2  # 6 Linear per layer (q, k, v, out, intermediate, output) + pooler + classifier
    assert type(quantized.bert.embeddings.LayerNorm) is nn.LayerNorm


def test_static_without_calibration_data_is_refused(trained_mlp):
    with pytest.raises(ValueError, match="StaticQuantConfig needs calibration_data"):
        quantize(trained_mlp, StaticQuantConfig())
    with pytest.raises(ValueError, match="calibration_data yielded no batches"):
        quantize(trained_mlp, StaticQuantConfig(), calibration_data=[])
    with pytest.raises(ValueError, match="calibration_data is only used by StaticQuantConfig"):
        quantize(trained_mlp, DynamicQuantConfig(), calibration_data=[torch.zeros(1, 784)])


def test_unavailable_backend_names_an_alternative(trained_mlp, calibration, monkeypatch):
    monkeypatch.setattr(_eager, "supported_engines", lambda: ["none", "x86", "fbgemm", "onednn"])
    with pytest.raises(RuntimeError, match=r"backend 'qnnpack' is not available .* use backend='x86' instead"):
        quantize(trained_mlp, StaticQuantConfig(backend="qnnpack"), calibration_data=calibration)
    monkeypatch.setattr(_eager, "supported_engines", lambda: ["none"])
    with pytest.raises(RuntimeError, match="no quantized engine: use ONNX Runtime int8"):
        quantize(trained_mlp, DynamicQuantConfig())


def test_not_a_config_is_refused(trained_mlp):
    with pytest.raises(TypeError, match="config must be one of DynamicQuantConfig, StaticQuantConfig"):
        quantize(trained_mlp, {"backend": "x86"})


def test_bitsandbytes_without_linear_layers_is_refused():
    with pytest.raises(ValueError, match=r"found no nn\.Linear layer"):
        quantize(nn.Sequential(nn.ReLU()), BitsAndBytesConfig())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where there is no CUDA device")
def test_bitsandbytes_on_cuda_without_a_gpu_is_refused_by_name(trained_mlp):
    with pytest.raises(ValueError, match=r"BitsAndBytesConfig\(device='cuda'\) but torch sees no CUDA device"):
        quantize(trained_mlp, BitsAndBytesConfig(device="cuda"))
