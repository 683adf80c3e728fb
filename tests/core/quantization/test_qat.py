"""Quantization-aware training: prepare (names and parameters kept), train, freeze, convert; and its bad inputs."""

import pytest
import torch
from quant_helpers import accuracy, build_mlp
from torch import nn

from lightning_distill.core.quantization import (
    QATConfig,
    freeze_qat_batchnorm,
    prepare_qat_,
    quantize,
    set_qat_observers,
)

# The shared fixtures (trained MNIST MLP, tiny BERT, their batches) live in quant_helpers.py.
pytest_plugins = ["quant_helpers"]


def _train(model: nn.Module, mnist: dict, steps: int = 20) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    x, y = mnist["train_x"], mnist["train_y"]
    for step in range(steps):
        start = (step * 64) % len(y)
        loss = nn.functional.cross_entropy(model(x[start : start + 64]), y[start : start + 64])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def test_prepare_keeps_parameter_names_and_objects(trained_mlp):
    model = build_mlp()
    model.load_state_dict(trained_mlp.state_dict())
    parameters = dict(model.named_parameters())
    prepare_qat_(model, QATConfig())
    assert dict(model.named_parameters()).keys() == parameters.keys()
    assert all(p is parameters[n] for n, p in model.named_parameters())
    assert set(trained_mlp.state_dict()) <= set(model.state_dict())  # float keys unchanged, fake-quant state added
    assert model.training
    with pytest.raises(ValueError, match="already prepared for QAT"):
        prepare_qat_(model, QATConfig())
    with pytest.raises(ValueError, match="prepare_qat_ needs QATConfig\\(step='prepare'\\)"):
        prepare_qat_(build_mlp(), QATConfig(step="convert"))


def test_train_then_convert_matches_the_fake_quantized_model(trained_mlp, mnist):
    prepared = quantize(trained_mlp, QATConfig())
    _train(prepared, mnist)
    converted = quantize(prepared, QATConfig(step="convert"))
    prepared.eval()
    x, y = mnist["test_x"], mnist["test_y"]
    with torch.no_grad():
        agreement = float((converted(x).argmax(-1) == prepared(x).argmax(-1)).float().mean())
    assert agreement >= 0.98
    assert accuracy(trained_mlp, x, y) - accuracy(converted, x, y) <= 0.02
    assert type(converted.hidden[0]).__name__ == "LinearReLU"
    assert type(converted.hidden[0]).__module__.startswith("torch.ao.nn.intrinsic.quantized")


def test_convert_before_any_training_step_is_refused(trained_mlp):
    prepared = quantize(trained_mlp, QATConfig())
    with pytest.raises(ValueError, match="QAT model converted before any training step"):
        quantize(prepared, QATConfig(step="convert"))


def test_convert_of_a_model_never_prepared_is_refused(trained_mlp):
    with pytest.raises(ValueError, match=r"needs a model returned by quantize\(model, QATConfig\(step='prepare'\)\)"):
        quantize(trained_mlp, QATConfig(step="convert"))


def test_qat_on_a_transformer_is_refused_with_the_alternatives(tiny_bert):
    with pytest.raises(
        ValueError, match=r"QATConfig needs a model built only from quantizable modules.*LayerNorm.*DynamicQuantConfig"
    ):
        quantize(tiny_bert, QATConfig())


def test_frozen_observers_stop_moving(trained_mlp, mnist):
    prepared = quantize(trained_mlp, QATConfig())
    _train(prepared, mnist, steps=2)
    set_qat_observers(prepared, False)
    freeze_qat_batchnorm(prepared)
    scale = prepared.hidden[0].activation_post_process.scale.clone()
    _train(prepared, mnist, steps=5)
    assert torch.equal(prepared.hidden[0].activation_post_process.scale, scale)
    set_qat_observers(prepared, True)
    _train(prepared, mnist, steps=5)
    assert not torch.equal(prepared.hidden[0].activation_post_process.scale, scale)
