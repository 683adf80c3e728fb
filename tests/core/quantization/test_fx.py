"""Static and QAT int8 of convolutional networks through FX graph mode; the eager fallback for untraceable models."""

import io
import os
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest
import torch
from tiny_cnn import ResidualCNN, is_int8
from torch import nn
from torchvision.models import resnet18

from lightning_distill.core.quantization import QATConfig, StaticQuantConfig, load_quantized, quantize, save_quantized

ROOT = Path(__file__).resolve().parents[3]


def images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@cache
def _resnet() -> nn.Module:
    torch.manual_seed(0)
    model = resnet18(weights=None, num_classes=10)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: the running stats become the exact batch statistics
    model.train()
    with torch.no_grad():
        for seed in range(4):
            model(images(8, seed))
    return model.eval()


@cache
def _quantized_resnet() -> nn.Module:
    calibration = [images(4, 100 + seed) for seed in range(4)]
    return quantize(_resnet(), StaticQuantConfig(calibration_batches=4), calibration_data=calibration)


def _size(state: dict) -> int:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return len(buffer.getvalue())


def test_static_resnet18_quantizes_every_conv_and_the_linear():
    """Random-init resnet18 whose BatchNorm running stats were first set by train-mode forwards on random images
    (with the init stats, eval-mode activations are mis-scaled and every logit is nearly tied).

    Top-1 agreement with float on random images is only 84-91% here (measured over seeds and backends): a random-init
    network's logits are separated by margins (median 0.15) close to the int8 error of 20 layers, so this test checks
    >= 80%; the 95% of issue #12 is for a trained network.
    """
    model, quantized = _resnet(), _quantized_resnet()
    weight_layers = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(weight_layers) == 21
    for name in weight_layers:  # the converted modules themselves, at the float layer names
        assert is_int8(quantized.get_submodule(name)), name
    report = quantized.quantization_report
    assert report.quantized == weight_layers and not report.skipped
    assert type(quantized.get_submodule("conv1")).__name__ == "ConvReLU2d"  # conv1 + bn1 + relu fused
    assert _size(quantized.state_dict()) <= 0.30 * _size(model.state_dict())
    x = images(64, 7)
    with torch.no_grad():
        expected, actual = model(x), quantized(x)
    assert float((expected.argmax(-1) == actual.argmax(-1)).float().mean()) >= 0.80
    assert float((actual - expected).abs().max()) <= 0.3 * float(expected.abs().max())
    assert not any(type(m) in (nn.Conv2d, nn.Linear) for m in quantized.modules())


def test_resnet18_reloads_in_a_fresh_process_with_identical_outputs(tmp_path):
    quantized = _quantized_resnet()
    x = images(2, 9)
    with torch.no_grad():
        before = quantized(x)
    save_quantized(quantized, tmp_path / "resnet.pt")
    torch.save(x, tmp_path / "x.pt")
    script = textwrap.dedent(
        f"""
        import torch
        from torchvision.models import resnet18
        from lightning_distill.core.quantization import load_quantized
        model = load_quantized({str(tmp_path / "resnet.pt")!r}, resnet18(weights=None, num_classes=10))
        x = torch.load({str(tmp_path / "x.pt")!r}, weights_only=True)
        with torch.no_grad():
            torch.save(model(x), {str(tmp_path / "after.pt")!r})
        print(model.quantization_report.summary().splitlines()[0])
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "21 of 21 weight layers quantized" in result.stdout
    assert torch.equal(torch.load(tmp_path / "after.pt", weights_only=True), before)


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(32, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    return x, (x.mean((1, 2, 3)) > 0).long() + (x[:, 0, 0, 0] > 1).long()


def test_qat_of_a_small_cnn_trains_converts_and_reloads(tmp_path):
    torch.manual_seed(0)
    model = ResidualCNN()
    prepared = quantize(model, QATConfig())
    assert {layer.status for layer in prepared.quantization_report.layers} == {"fake-quantized"}
    assert prepared.get_submodule("conv1").bn is not None  # Conv + BatchNorm fused for training
    assert set(model.state_dict()) <= set(prepared.state_dict())  # float names kept, fake-quant state added
    optimizer = torch.optim.Adam(prepared.parameters(), lr=0.01)
    x, y = _data()
    losses = []
    for _ in range(8):
        loss = nn.functional.cross_entropy(prepared(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    converted = quantize(prepared, QATConfig(step="convert"))
    for name in ("conv1", "conv2", "head"):
        assert is_int8(converted.get_submodule(name)), name
    prepared.eval()
    with torch.no_grad():
        agreement = float((converted(x).argmax(-1) == prepared(x).argmax(-1)).float().mean())
    assert agreement >= 0.9
    reloaded = load_quantized(save_quantized(converted, tmp_path / "qat.pt"), ResidualCNN())
    with torch.no_grad():
        assert torch.equal(reloaded(x), converted(x))


class Branchy(ResidualCNN):
    """Python control flow on a tensor value: symbolic tracing cannot follow it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:
            x = -x
        return super().forward(x)


class Reporting(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3)
        self.bilinear = nn.Bilinear(4, 4, 4)
        self.unused = nn.Linear(4, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x).mean((2, 3))
        return self.head(self.bilinear(x, x))


def test_report_names_every_weight_layer_with_its_reason():
    model = Reporting().eval()
    x = torch.randn(4, 1, 6, 6)
    quantized = quantize(model, StaticQuantConfig(calibration_batches=1, skip_modules=["head"]), calibration_data=[x])
    outcomes = {layer.name: (layer.status, layer.reason) for layer in quantized.quantization_report.layers}
    assert outcomes == {
        "conv": ("quantized", ""),
        "bilinear": (
            "float",
            "Bilinear has no int8 kernel in FX graph mode static quantization (default qconfig mapping)",
        ),
        "unused": ("float", "not called by the model's forward, so FX tracing dropped it"),
        "head": ("float", "excluded by skip_modules pattern 'head'"),
    }
    assert type(quantized.head) is nn.Linear
    with torch.no_grad():
        assert (quantized(x) - model(x)).abs().max() <= 0.1 * model(x).abs().max() + 0.02


def test_a_model_that_does_not_trace_falls_back_to_eager_with_the_reason(tmp_path):
    torch.manual_seed(0)
    model = Branchy().eval()
    x = torch.randn(8, 1, 8, 8)
    quantized = quantize(model, StaticQuantConfig(calibration_batches=1), calibration_data=[x])
    report = quantized.quantization_report
    assert report.untraceable is not None and "TraceError" in report.untraceable
    assert report.quantized == ["head"] and type(quantized.head).__name__ == "QuantWrapper"
    assert report.notes[-1].startswith("FX graph mode cannot trace Branchy (TraceError: ")
    conv = {layer.name: layer.reason for layer in report.skipped}["conv1"]
    assert "not symbolically traceable (TraceError: " in conv and "only its nn.Linear layers" in conv
    reloaded = load_quantized(save_quantized(quantized, tmp_path / "branchy.pt"), Branchy())
    assert reloaded.quantization_report == report
    with torch.no_grad():
        assert torch.equal(reloaded(x), quantized(x))
    with pytest.raises(ValueError, match=r"QATConfig needs .* FX graph mode cannot trace it \(TraceError: "):
        quantize(model, QATConfig())
