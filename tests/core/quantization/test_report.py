"""Per-layer summaries of quantize calls, and a top-level nn.Sequential quantized end to end (stubs run once)."""

import pytest
import torch
from torch import nn

from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    StaticQuantConfig,
    check_quantizable,
    load_quantized,
    quantize,
    save_quantized,
)

# The shared fixtures (tiny BERT) live in quant_helpers.py.
pytest_plugins = ["quant_helpers"]


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.norm = nn.LayerNorm(16)
        self.fc = nn.Linear(4 * 6 * 6, 16)
        self.head = nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.norm(self.fc(self.conv(x).flatten(1))))


def sequential() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def outcomes(model: nn.Module) -> dict[str, tuple[str, str]]:
    return {layer.name: (layer.status, layer.reason) for layer in model.quantization_report.layers}


def test_dynamic_summary_lists_quantized_and_skipped_layers_with_reasons(tmp_path):
    quantized = quantize(ConvNet(), DynamicQuantConfig(skip_modules=["head"]))
    assert outcomes(quantized) == {
        "conv": ("float", "Conv2d not supported by dynamic quantization (it converts nn.Linear layers)"),
        "fc": ("quantized", ""),
        "head": ("float", "excluded by skip_modules pattern 'head'"),
    }
    report = quantized.quantization_report
    assert report.quantized == ["fc"] and report.to_dict()["num_weight_layers"] == 3
    assert "1 of 3 weight layers quantized" in report.summary()
    reloaded = load_quantized(save_quantized(quantized, tmp_path / "q.pt"), ConvNet())
    assert reloaded.quantization_report == report


class UntraceableConvNet(ConvNet):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if x.sum() > 0 else -x)  # control flow on a tensor value: FX cannot trace it


def test_static_summary_says_why_the_model_is_quantized_layer_by_layer():
    x = torch.randn(4, 1, 8, 8)
    quantized = quantize(ConvNet(), StaticQuantConfig(calibration_batches=1), calibration_data=[x])
    assert quantized.quantization_report.quantized == ["conv", "fc", "head"]  # traced: FX graph mode
    quantized = quantize(UntraceableConvNet(), StaticQuantConfig(calibration_batches=1), calibration_data=[x])
    report = quantized.quantization_report
    assert report.quantized == ["fc", "head"] and report.skipped[0].name == "conv"
    assert report.notes == (
        f"FX graph mode cannot trace UntraceableConvNet ({report.untraceable}) and conv (Conv2d), norm (LayerNorm) "
        "have no eager int8 kernel, so each nn.Linear is quantized on its own between a quantize and a dequantize step",
    )


def test_bitsandbytes_and_qat_summaries():
    assert outcomes(quantize(ConvNet(), BitsAndBytesConfig()))["conv"] == (
        "float",
        "Conv2d not supported by bitsandbytes (it replaces plain nn.Linear layers)",
    )
    prepared = quantize(sequential(), QATConfig())
    assert {status for status, _ in outcomes(prepared).values()} == {"fake-quantized"}


def test_bert_dynamic_summary_counts_every_linear(tiny_bert):
    report = quantize(tiny_bert, DynamicQuantConfig()).quantization_report
    linears = [n for n, m in tiny_bert.named_modules() if isinstance(m, nn.Linear)]
    assert report.quantized == linears
    assert {layer.layer for layer in report.skipped} == {"Embedding"}


def test_a_model_dynamic_quantization_cannot_touch_is_refused():
    with pytest.raises(ValueError, match=r"would quantize no layer of Sequential: 0 \(Conv2d\): Conv2d not supported"):
        quantize(nn.Sequential(nn.Conv2d(1, 2, 3)), DynamicQuantConfig())
    with pytest.raises(ValueError, match=r"head \(Linear\): excluded by skip_modules pattern 'h\*'"):
        check_quantizable(nn.ModuleDict({"head": nn.Linear(2, 2)}), DynamicQuantConfig(skip_modules=["h*"]))
    assert check_quantizable(ConvNet(), StaticQuantConfig()) == ["conv", "fc", "head"]
    assert check_quantizable(UntraceableConvNet(), StaticQuantConfig()) == ["fc", "head"]


def test_static_top_level_sequential_runs_end_to_end(tmp_path):
    model = sequential().eval()
    x = torch.randn(32, 8)
    quantized = quantize(model, StaticQuantConfig(calibration_batches=2), calibration_data=[x[:16], x[16:]])
    assert type(quantized[0]).__name__ == "LinearReLU"  # fused and int8, not a per-layer QuantWrapper
    assert quantized.quantization_report.notes == (
        "the whole model runs in int8 between one quantize and one dequantize step",
    )
    reloaded = load_quantized(save_quantized(quantized, tmp_path / "s.pt"), sequential())
    with torch.no_grad():
        assert torch.equal(reloaded(x), quantized(x))
        assert (quantized(x) - model(x)).abs().max() <= 0.1 * model(x).abs().max()


def test_qat_top_level_sequential_converts_to_a_model_that_runs_and_reloads(tmp_path):
    prepared = quantize(sequential(), QATConfig())
    optimizer = torch.optim.SGD(prepared.parameters(), lr=0.05)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    for _ in range(5):
        loss = nn.functional.cross_entropy(prepared(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    converted = quantize(prepared, QATConfig(step="convert"))
    reloaded = load_quantized(save_quantized(converted, tmp_path / "qat.pt"), sequential())
    prepared.eval()
    with torch.no_grad():
        assert torch.equal(reloaded(x), converted(x))
        assert (converted(x) - prepared(x)).abs().max() <= 0.1 * prepared(x).abs().max()
    assert [name for name, _ in converted.named_children()][:3] == ["0", "1", "2"]  # names kept


def test_a_subclass_of_sequential_is_prepared_for_qat_through_fx():
    class Stack(nn.Sequential):  # the eager path would run its added quantize/dequantize children as layers
        pass

    prepared = quantize(Stack(nn.Linear(4, 2)), QATConfig())
    assert outcomes(prepared) == {"0": ("fake-quantized", "")}
    prepared(torch.randn(3, 4)).sum().backward()
    assert outcomes(quantize(prepared, QATConfig(step="convert"))) == {"0": ("quantized", "")}
