"""PostTrainingQuantization and QuantizationAwareTraining on a CNN LightningModule: both go through FX graph mode."""

from pathlib import Path

import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_cnn import ResidualCNN, is_int8
from torch import nn
from torch.fx import GraphModule
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.quantization import StaticQuantConfig, load_quantized
from lightning_distill.lightning.callbacks import PostTrainingQuantization, QuantizationAwareTraining
from lightning_distill.lightning.modules import ClassifierModule


def loader(seed: int = 1) -> DataLoader:
    x = torch.randn(64, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    y = (x[:, 0, :4].mean((1, 2)) > 0).long() + (x[:, 0, 4:].mean((1, 2)) > 0).long()
    return DataLoader(TensorDataset(x, y), batch_size=16)


def module(seed: int = 0) -> ClassifierModule:
    torch.manual_seed(seed)
    return ClassifierModule(ResidualCNN(), learning_rate=0.02)


FLOAT_KEYS = {f"model.{k}" for k in ResidualCNN().state_dict()}


def fit(tmp_path: Path, callback) -> tuple[ClassifierModule, ModelCheckpoint]:
    model = module()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max", save_last=True)
    trainer = tiny_trainer(
        max_epochs=2, callbacks=[callback, checkpoint], enable_checkpointing=True, default_root_dir=tmp_path
    )
    trainer.fit(model, loader(), loader(seed=2))
    return model, checkpoint


def _int8(model: nn.Module, name: str) -> bool:
    return is_int8(model.get_submodule(name))


def test_post_training_static_int8_of_a_cnn(tmp_path):
    callback = PostTrainingQuantization(StaticQuantConfig(calibration_batches=2))
    model, checkpoint = fit(tmp_path, callback)
    assert callback.report.quantized == ["conv1", "conv2", "head"]
    quantized = load_quantized(callback.artifact_path, ResidualCNN())
    assert all(_int8(quantized, name) for name in ("conv1", "conv2", "head"))
    assert type(model.model) is ResidualCNN  # the trained module stays float
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert set(saved["state_dict"]) == FLOAT_KEYS


def test_qat_of_a_cnn_keeps_float_checkpoints_and_reloads(tmp_path):
    qat = QuantizationAwareTraining()
    model, checkpoint = fit(tmp_path, qat)
    assert isinstance(model.model, GraphModule) and model.model.get_submodule("conv1").bn is not None  # FX, fused
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert set(saved["state_dict"]) == FLOAT_KEYS  # loads into the plain float CNN
    assert saved["callbacks"]["QuantizationAwareTraining"]["qat_state"]
    module(seed=3).load_state_dict(saved["state_dict"], strict=True)
    assert qat.report.quantized == ["conv1", "conv2", "head"]
    converted = load_quantized(qat.artifact_path, ResidualCNN())
    assert all(_int8(converted, name) for name in ("conv1", "conv2", "head"))
    x = next(iter(loader(seed=3)))[0]
    model.eval()
    with torch.no_grad():
        assert float((converted(x).argmax(-1) == model(x).argmax(-1)).float().mean()) >= 0.9
    expected = tiny_trainer().test(model, loader(seed=2), verbose=False)[0]["test/acc"]
    again = tiny_trainer(callbacks=[QuantizationAwareTraining()]).test(
        module(seed=5), loader(seed=2), ckpt_path=checkpoint.last_model_path, verbose=False
    )
    assert again[0]["test/acc"] == pytest.approx(expected)
