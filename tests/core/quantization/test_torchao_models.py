"""engine="torchao" on the three model families for each method not covered in test_torchao.py: dynamic int8 of a
CNN, static int8 of a BERT encoder (PT2E exports it with keyword inputs and dynamic batch and sequence dims), QAT of
a CNN. Tolerances as for the eager / FX engines (test_quantize.py, test_fx.py): BERT logits within 0.02 of float,
CNN predictions agreeing with float on >= 90% of the examples."""

import torch
from quant_helpers import bert_logits
from test_torchao import SmallCNN, _images
from torch import nn

from lightning_distill.core.quantization import DynamicQuantConfig, QATConfig, StaticQuantConfig, quantize

pytest_plugins = ["quant_helpers"]


def _agreement(model: nn.Module, quantized: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == quantized(x).argmax(-1)).float().mean())


def test_static_bert_runs_every_linear_in_int8_on_any_batch_and_length(tiny_bert, bert_batches):
    config = StaticQuantConfig(engine="torchao", calibration_batches=4)
    quantized = quantize(tiny_bert, config, calibration_data=bert_batches)
    linears = [n for n, m in tiny_bert.named_modules() if isinstance(m, nn.Linear)]
    assert quantized.quantization_report.quantized == linears
    for batch in bert_batches:  # batch sizes 1-8, lengths 5-16: exported with dynamic dims
        assert (bert_logits(quantized, batch) - bert_logits(tiny_bert, batch)).abs().max() <= 0.02


def test_dynamic_cnn_quantizes_its_linear_head_and_keeps_predictions():
    model = SmallCNN().eval()
    quantized = quantize(model, DynamicQuantConfig(engine="torchao"))
    report = quantized.quantization_report
    assert report.quantized == ["head"] and report.skipped[0].name == "features.0"
    assert _agreement(model, quantized, _images(64, 3)) >= 0.9


def test_qat_cnn_trains_with_fake_quantized_conv_and_converts_to_int8():
    model = SmallCNN()
    calibration = [_images(16, i) for i in range(2)]
    prepared = quantize(model, QATConfig(engine="torchao"), calibration_data=calibration)
    assert {layer.status for layer in prepared.quantization_report.layers} == {"fake-quantized"}
    optimizer = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    for x in calibration:
        loss = nn.functional.cross_entropy(prepared(x), model.eval()(x).argmax(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    converted = quantize(prepared, QATConfig(engine="torchao", step="convert"))
    assert converted.quantization_report.quantized == ["features.0", "head"]
    prepared.eval()
    assert _agreement(prepared, converted, _images(64, 5)) >= 0.9
