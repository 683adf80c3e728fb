"""engine="torchao": dynamic int8 through ``quantize_``, static int8 and QAT through PT2E, reloaded in a fresh process.

Tolerances as in test_quantize.py: int8 agrees with float on >= 97% of 500 MNIST test images and loses <= 1.5 points.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from quant_helpers import accuracy, bert_logits, build_mlp
from torch import nn

from lightning_distill.core.quantization import (
    DynamicQuantConfig,
    QATConfig,
    StaticQuantConfig,
    check_quantizable,
    load_quantized,
    prepare_qat_,
    quantize,
    save_quantized,
)

pytest_plugins = ["quant_helpers"]
HERE = Path(__file__).resolve().parent


class SmallCNN(nn.Module):
    """Conv + BatchNorm + ReLU, pooling, a linear head: the shape of the torchvision CNNs, small."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.head = nn.Linear(16, 3)
        self.features[1].running_mean.uniform_(-0.5, 0.5)  # non-trivial batch norm, so folding it matters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(x)).flatten(1))


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_static_mlp_is_int8_small_and_accurate(trained_mlp, calibration, mnist, tmp_path):
    quantized = quantize(trained_mlp, StaticQuantConfig(engine="torchao"), calibration_data=calibration)
    report = quantized.quantization_report
    assert report.quantized == ["hidden.0", "hidden.2", "classifier"] and not report.skipped
    assert "X86InductorQuantizer" in report.notes[0]
    x, y = mnist["test_x"], mnist["test_y"]
    assert accuracy(trained_mlp, x, y) - accuracy(quantized, x, y) <= 0.015
    torch.save(trained_mlp.state_dict(), tmp_path / "float.pt")
    size = save_quantized(quantized, tmp_path / "int8.pt").stat().st_size
    assert size <= 0.30 * (tmp_path / "float.pt").stat().st_size  # float weights dropped from the graph
    assert all(t.dtype == torch.int8 for n, t in quantized.state_dict().items() if n.startswith("_frozen_param"))


def test_static_cnn_quantizes_conv_and_linear_and_any_batch_size_runs():
    model = SmallCNN().eval()
    quantized = quantize(model, StaticQuantConfig(engine="torchao"), calibration_data=[_images(8, i) for i in range(4)])
    assert quantized.quantization_report.quantized == ["features.0", "head"]
    for batch in (1, 5):  # exported with a dynamic batch dimension
        x = _images(batch, 9)
        with torch.no_grad():
            expected, actual = model(x), quantized(x)
        assert (actual - expected).abs().max() <= 0.1 * expected.abs().max()


def test_static_skip_modules_keeps_the_layer_float_and_says_why(trained_mlp, calibration):
    config = StaticQuantConfig(engine="torchao", skip_modules=["class*"])
    report = quantize(trained_mlp, config, calibration_data=calibration).quantization_report
    assert report.quantized == ["hidden.0", "hidden.2"]
    assert report.skipped[0].name == "classifier" and "'class*'" in report.skipped[0].reason


def test_dynamic_mlp_swaps_linear_weights_for_int8_tensors(trained_mlp, mnist):
    quantized = quantize(trained_mlp, DynamicQuantConfig(engine="torchao", skip_modules=["classifier"]))
    report = quantized.quantization_report
    assert report.quantized == ["hidden.0", "hidden.2"]
    assert "Int8Tensor" in report.layers[0].result and "skip_modules" in report.skipped[0].reason
    assert type(quantized.hidden[0].weight).__module__.startswith("torchao")
    assert type(trained_mlp.hidden[0].weight) is nn.Parameter  # the float model is untouched
    x, y = mnist["test_x"], mnist["test_y"]
    assert accuracy(trained_mlp, x, y) - accuracy(quantized, x, y) <= 0.015


def test_dynamic_bert_quantizes_every_linear_and_says_embeddings_stay_float(tiny_bert, bert_batches):
    quantized = quantize(tiny_bert, DynamicQuantConfig(engine="torchao"))
    report = quantized.quantization_report
    linears = [n for n, m in tiny_bert.named_modules() if isinstance(m, nn.Linear)]
    assert report.quantized == linears
    assert all("converts nn.Linear" in layer.reason for layer in report.skipped)  # the embeddings
    for batch in bert_batches:
        assert (bert_logits(quantized, batch) - bert_logits(tiny_bert, batch)).abs().max() <= 0.02


def test_qat_prepares_trains_and_converts_through_pt2e(trained_mlp, calibration, mnist):
    with pytest.raises(ValueError, match=r"needs calibration_data as torch\.export.s example"):
        quantize(trained_mlp, QATConfig(engine="torchao"))
    prepared = quantize(trained_mlp, QATConfig(engine="torchao"), calibration_data=calibration)
    assert prepared.training and prepared.quantization_report.layers[0].status == "fake-quantized"
    with pytest.raises(ValueError, match="before any training step"):
        quantize(prepared, QATConfig(engine="torchao", step="convert"))
    optimizer = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    for images, labels in calibration[:2]:
        loss = nn.functional.cross_entropy(prepared(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    converted = quantize(prepared, QATConfig(engine="torchao", step="convert"))
    assert converted.quantization_report.quantized == ["hidden.0", "hidden.2", "classifier"]
    x, y = mnist["test_x"], mnist["test_y"]
    assert accuracy(trained_mlp, x, y) - accuracy(converted, x, y) <= 0.015
    with pytest.raises(ValueError, match="needs a model returned by quantize"):
        quantize(trained_mlp, QATConfig(engine="torchao", step="convert"))


_RELOAD = """
import sys, torch
sys.path.insert(0, {here!r})
from quant_helpers import build_mlp
from test_torchao import SmallCNN
from lightning_distill.core.quantization import load_quantized
from lightning_distill.core.safe_load import load_file
inputs = load_file({inputs!r})
outputs = {{}}
for name, path in {files!r}.items():
    model = load_quantized(path, SmallCNN() if name == "cnn" else build_mlp())
    with torch.no_grad():
        outputs[name] = model(inputs[name])
    outputs[name + "/report"] = torch.tensor(len(model.quantization_report.quantized))
torch.save(outputs, {out!r})
"""


def test_round_trips_in_a_fresh_process_give_identical_outputs(trained_mlp, calibration, mnist, tmp_path):
    cnn_calibration = [_images(8, i) for i in range(4)]
    prepared = quantize(trained_mlp, QATConfig(engine="torchao"), calibration_data=calibration)
    nn.functional.cross_entropy(prepared(calibration[0][0]), calibration[0][1]).backward()
    models = {
        "static": quantize(trained_mlp, StaticQuantConfig(engine="torchao"), calibration_data=calibration),
        "dynamic": quantize(trained_mlp, DynamicQuantConfig(engine="torchao")),
        "cnn": quantize(SmallCNN().eval(), StaticQuantConfig(engine="torchao"), calibration_data=cnn_calibration),
        "qat": quantize(prepared, QATConfig(engine="torchao", step="convert")),
    }
    inputs = {name: mnist["test_x"][:50] for name in models} | {"cnn": _images(6, 7)}
    files = {name: str(save_quantized(model, tmp_path / f"{name}.pt")) for name, model in models.items()}
    torch.save(inputs, tmp_path / "inputs.pt")
    script = _RELOAD.format(here=str(HERE), inputs=str(tmp_path / "inputs.pt"), files=files, out=str(tmp_path / "o.pt"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    outputs = torch.load(tmp_path / "o.pt", weights_only=True)
    for name, model in models.items():
        with torch.no_grad():
            assert torch.equal(outputs[name], model(inputs[name])), name
        assert int(outputs[name + "/report"]) == len(model.quantization_report.quantized) > 0


_RELOAD_WITHOUT_TORCHAO = """
import sys, torch
from torch import nn
from lightning_distill.core.quantization import load_quantized
assert "torchao" not in sys.modules, "the test must load without importing torchao first"
torch.manual_seed(1)
model = load_quantized({path!r}, nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)))
with torch.no_grad():
    torch.save(model(torch.load({inputs!r}, weights_only=True)), {out!r})
"""


def test_a_dynamic_file_reloads_in_a_process_that_never_imported_torchao(tmp_path):
    """The file's int8 tensors are torchao classes; ``load_quantized`` itself imports torchao to read them."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    quantized = quantize(model, DynamicQuantConfig(engine="torchao"))
    path = save_quantized(quantized, tmp_path / "dynamic.pt")
    inputs = torch.randn(5, 16, generator=torch.Generator().manual_seed(2))
    torch.save(inputs, tmp_path / "inputs.pt")
    script = _RELOAD_WITHOUT_TORCHAO.format(path=str(path), inputs=str(tmp_path / "inputs.pt"), out=str(tmp_path / "o"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    with torch.no_grad():
        assert torch.equal(torch.load(tmp_path / "o", weights_only=True), quantized(inputs))


def test_wrong_engine_dtype_and_backend_are_refused_by_name(trained_mlp, calibration):
    with pytest.raises(ValueError, match=r"engine must be one of 'eager', 'torchao'; got 'ao'"):
        StaticQuantConfig(engine="ao")
    with pytest.raises(ValueError, match="quantizes to int8 only; got dtype='float16'"):
        DynamicQuantConfig(engine="torchao", dtype="float16")
    try:
        import executorch  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match=r"XNNPACK quantizer .* executorch"):
            check_quantizable(trained_mlp, StaticQuantConfig(engine="torchao", backend="qnnpack"))
    with pytest.raises(ValueError, match="run the eager engine only; got engine='torchao'"):
        prepare_qat_(build_mlp(), QATConfig(engine="torchao"))
    from lightning_distill.lightning.callbacks import QuantizationAwareTraining

    with pytest.raises(ValueError, match="runs the eager engine only; got engine='torchao'"):
        QuantizationAwareTraining(QATConfig(engine="torchao"))  # refused at construction, before any training


def test_missing_torchao_is_refused_before_any_work_with_the_extra(trained_mlp, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchao", None)  # import torchao now raises ImportError
    with pytest.raises(ImportError, match=r"\[torchao\] extra"):
        check_quantizable(trained_mlp, DynamicQuantConfig(engine="torchao"))


def test_a_forward_export_cannot_capture_is_refused_with_the_alternative(calibration):
    class DataDependent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(784, 10)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.linear(x.flatten(1))
            return out if bool(out.sum() > 0) else -out  # Python branch on a tensor value

    with pytest.raises(ValueError, match=r"torch\.export can capture.*DynamicQuantConfig\(engine='torchao'\)"):
        quantize(DataDependent(), StaticQuantConfig(engine="torchao"), calibration_data=calibration)


def test_load_quantized_rejects_a_model_of_another_shape(trained_mlp, calibration, tmp_path):
    quantized = quantize(trained_mlp, StaticQuantConfig(engine="torchao"), calibration_data=calibration)
    path = save_quantized(quantized, tmp_path / "q.pt")
    from lightning_distill.core.models import MLP

    with pytest.raises(ValueError, match="does not fit the given MLP"):
        load_quantized(path, MLP(hidden_sizes=[8]))
