"""Quantized models survive a round trip through disk with identical predictions; bad files fail clearly."""

import pytest
import torch
from quant_helpers import bert_logits, build_bert, build_mlp

from lightning_distill.core.models import MLP
from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    StaticQuantConfig,
    load_quantized,
    quantize,
    read_config,
    save_quantized,
)

# The shared fixtures (trained MNIST MLP, tiny BERT, their batches) live in quant_helpers.py.
pytest_plugins = ["quant_helpers"]

CONFIGS = [
    DynamicQuantConfig(),
    DynamicQuantConfig(dtype="float16"),
    StaticQuantConfig(),
    StaticQuantConfig(backend="qnnpack", skip_modules=["classifier"]),
    BitsAndBytesConfig(weights="int8"),
    BitsAndBytesConfig(weights="nf4"),
    DynamicQuantConfig(engine="torchao"),
    StaticQuantConfig(engine="torchao"),
]


@pytest.mark.parametrize("config", CONFIGS, ids=repr)
def test_mlp_round_trip_gives_identical_predictions(config, trained_mlp, calibration, mnist, tmp_path):
    calibration_data = calibration if isinstance(config, StaticQuantConfig) else None
    quantized = quantize(trained_mlp, config, calibration_data=calibration_data)
    x = mnist["test_x"][:100]
    with torch.no_grad():
        before = quantized(x)  # a forward before saving must not change what is saved
    path = save_quantized(quantized, tmp_path / "model.pt")
    assert read_config(path) == config
    reloaded = load_quantized(path, build_mlp())
    with torch.no_grad():
        assert torch.equal(reloaded(x), before)


@pytest.mark.parametrize(
    "config",
    [
        DynamicQuantConfig(),
        StaticQuantConfig(calibration_batches=2),
        BitsAndBytesConfig(),
        BitsAndBytesConfig(weights="nf4"),
        DynamicQuantConfig(engine="torchao"),
    ],
    ids=repr,
)
def test_bert_round_trip_gives_identical_predictions(config, tiny_bert, bert_batches, tmp_path):
    calibration_data = bert_batches if isinstance(config, StaticQuantConfig) else None
    quantized = quantize(tiny_bert, config, calibration_data=calibration_data)
    path = save_quantized(quantized, tmp_path / "bert.pt")
    reloaded = load_quantized(path, build_bert())
    for batch in bert_batches:
        assert torch.equal(bert_logits(reloaded, batch), bert_logits(quantized, batch))


def test_qat_round_trip_and_prepared_model_is_not_saved(trained_mlp, mnist, tmp_path):
    prepared = quantize(trained_mlp, QATConfig())
    with pytest.raises(ValueError, match="prepared, not converted"):
        save_quantized(prepared, tmp_path / "prepared.pt")
    x, y = mnist["train_x"][:64], mnist["train_y"][:64]
    torch.nn.functional.cross_entropy(prepared(x), y).backward()
    converted = quantize(prepared, QATConfig(step="convert"))
    reloaded = load_quantized(save_quantized(converted, tmp_path / "qat.pt"), build_mlp())
    with torch.no_grad():
        assert torch.equal(reloaded(mnist["test_x"]), converted(mnist["test_x"]))


def test_bad_files_and_models_fail_clearly(trained_mlp, tmp_path):
    with pytest.raises(ValueError, match="needs a model returned by quantize"):
        save_quantized(trained_mlp, tmp_path / "float.pt")
    with pytest.raises(FileNotFoundError, match="no quantized model at"):
        load_quantized(tmp_path / "missing.pt", build_mlp())
    torch.save(trained_mlp.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="is not a lightning-distill/quantized file"):
        load_quantized(tmp_path / "plain.pt", build_mlp())
    path = save_quantized(quantize(trained_mlp, DynamicQuantConfig()), tmp_path / "q.pt")
    with pytest.raises(ValueError, match="does not fit the given MLP"):
        load_quantized(path, MLP(hidden_sizes=[8]))
