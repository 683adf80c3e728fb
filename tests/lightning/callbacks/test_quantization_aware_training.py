"""QuantizationAwareTraining: float checkpoint format, resume, test from a checkpoint, freezing, pruning alongside."""

from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.core.quantization import QATConfig, load_quantized
from lightning_distill.lightning.callbacks import MagnitudePruning, QuantizationAwareTraining
from lightning_distill.lightning.modules import ClassifierModule


def loader(n: int = 96, batch_size: int = 16, seed: int = 1) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=generator)
    y = x[:, :3].argmax(1)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def mlp() -> MLP:
    return MLP(num_classes=3, in_features=20, hidden_sizes=[16])


def module(seed: int = 0) -> ClassifierModule:
    torch.manual_seed(seed)
    return ClassifierModule(mlp(), learning_rate=0.02)


FLOAT_KEYS = {f"model.{k}" for k in mlp().state_dict()}


def fit(tmp_path: Path, callbacks: list, max_epochs: int = 2, ckpt_path: str | None = None, **kwargs: Any):
    model = module()
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max", save_last=True)
    trainer = tiny_trainer(
        max_epochs=max_epochs,
        callbacks=[*callbacks, checkpoint],
        enable_checkpointing=True,
        default_root_dir=tmp_path,
        **kwargs,
    )
    trainer.fit(model, loader(), loader(seed=2), ckpt_path=ckpt_path)
    return trainer, model, checkpoint


def test_checkpoints_keep_the_float_format_and_the_int8_copy_reloads(tmp_path):
    qat = QuantizationAwareTraining()
    _, model, checkpoint = fit(tmp_path, [qat])
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert set(saved["state_dict"]) == FLOAT_KEYS  # no fake-quantize entries: loads into the plain float model
    assert saved["callbacks"]["QuantizationAwareTraining"]["qat_state"]  # they travel in the callback's entry
    plain = module()
    plain.load_state_dict(saved["state_dict"], strict=True)
    # the LightningModule stayed in fake-quantized float; the artifact is int8 and reloads to the same predictions
    assert type(model.model.hidden[0]).__name__ == "LinearReLU" and model.model.hidden[0].weight.dtype == torch.float32
    assert qat.artifact_path == tmp_path / "quantized" / "qat_int8.pt"
    reloaded = load_quantized(qat.artifact_path, mlp())
    x = next(iter(loader(seed=3)))[0]
    model.eval()
    with torch.no_grad():
        agreement = (reloaded(x).argmax(-1) == model(x).argmax(-1)).float().mean()
    assert agreement >= 0.9


def test_test_from_checkpoint_works_with_and_without_the_callback(tmp_path):
    trainer, model, checkpoint = fit(tmp_path, [QuantizationAwareTraining()])
    expected = trainer.test(model, loader(seed=2), verbose=False)[0]["test/acc"]
    with_callback = tiny_trainer(callbacks=[QuantizationAwareTraining()]).test(
        module(seed=5), loader(seed=2), ckpt_path=checkpoint.last_model_path, verbose=False
    )
    assert with_callback[0]["test/acc"] == pytest.approx(expected)  # same fake-quantized model, observer state back
    without = tiny_trainer().test(module(seed=5), loader(seed=2), ckpt_path=checkpoint.last_model_path, verbose=False)
    assert 0.0 <= without[0]["test/acc"] <= 1.0  # the float weights alone load strictly


class ScaleProbe(Callback):
    def __init__(self) -> None:
        self.scales: list[torch.Tensor] = []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self.scales.append(pl_module.model.hidden[0].activation_post_process.scale.clone())


def test_resume_restores_the_fake_quantize_state(tmp_path):
    _, _, checkpoint = fit(tmp_path / "first", [QuantizationAwareTraining()], max_epochs=1)
    saved_scale = torch.load(checkpoint.last_model_path, weights_only=False)["callbacks"]["QuantizationAwareTraining"][
        "qat_state"
    ]["hidden.0.activation_post_process.scale"]
    probe = ScaleProbe()
    fit(tmp_path / "second", [QuantizationAwareTraining(), probe], max_epochs=2, ckpt_path=checkpoint.last_model_path)
    assert len(probe.scales) == 1 and torch.equal(probe.scales[0], saved_scale)


def test_observers_freeze_at_the_given_epoch(tmp_path):
    probe = ScaleProbe()
    qat = QuantizationAwareTraining(QATConfig(freeze_observers_epoch=1))
    _, model, _ = fit(tmp_path, [qat, probe], max_epochs=3)
    final = model.model.hidden[0].activation_post_process.scale
    assert not torch.equal(probe.scales[0], probe.scales[1])  # epoch 0 moved the ranges
    assert torch.equal(probe.scales[1], probe.scales[2]) and torch.equal(probe.scales[2], final)  # frozen from epoch 1


def test_magnitude_pruning_and_qat_in_the_same_fit(tmp_path):
    pruning = MagnitudePruning(final_sparsity=0.5, start=0, verbose=False)
    qat = QuantizationAwareTraining()
    _, _, checkpoint = fit(tmp_path, [pruning, qat], max_epochs=2)
    assert pruning.last_sparsity["overall"] == pytest.approx(0.5, abs=1e-2)
    # the int8 model keeps the zeros, and the checkpoint still loads into a plain float model and tests from disk
    converted = load_quantized(qat.artifact_path, mlp())
    int8_weights = [converted.hidden[0].weight(), converted.classifier.weight()]
    zeros = sum(int((w.int_repr() == 0).sum()) for w in int8_weights)
    assert zeros >= 0.5 * sum(w.numel() for w in int8_weights)
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert set(saved["state_dict"]) == FLOAT_KEYS
    result = tiny_trainer(callbacks=[QuantizationAwareTraining()]).test(
        module(seed=5), loader(seed=2), ckpt_path=checkpoint.best_model_path, verbose=False
    )
    assert 0.0 <= result[0]["test/acc"] <= 1.0


def test_converting_before_any_training_step_is_refused(tmp_path):
    with pytest.raises(ValueError, match="QAT model converted before any training step"):
        fit(tmp_path, [QuantizationAwareTraining()], max_epochs=1, limit_train_batches=0)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="config must be a QATConfig with step='prepare'"):
        QuantizationAwareTraining(QATConfig(step="convert"))
    with pytest.raises(ValueError, match="checkpoint must be 'best' or 'last'; got 'first'"):
        QuantizationAwareTraining(checkpoint="first")
    with pytest.raises(ValueError, match=r"model_attribute must be 'auto', 'self' .* got 'net/encoder'"):
        QuantizationAwareTraining(model_attribute="net/encoder")
