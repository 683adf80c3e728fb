"""PostTrainingQuantization: an int8 copy of the best model at the end of fit, checkpoints untouched."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    StaticQuantConfig,
    load_quantized,
)
from lightning_distill.lightning.callbacks import MagnitudePruning, PostTrainingQuantization
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule


def loader(n: int = 96, batch_size: int = 16, seed: int = 1) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=generator)
    return DataLoader(TensorDataset(x, x[:, :3].argmax(1)), batch_size=batch_size)


class Data(pl.LightningDataModule):
    def train_dataloader(self) -> DataLoader:
        return loader()

    def val_dataloader(self) -> DataLoader:
        return loader(seed=2)


def mlp() -> MLP:
    return MLP(num_classes=3, in_features=20, hidden_sizes=[16])


def fit(tmp_path: Path, module: pl.LightningModule, callbacks: list, **kwargs) -> ModelCheckpoint:
    checkpoint = ModelCheckpoint(dirpath=tmp_path / "ckpt", monitor="val/acc", mode="max", save_last=True)
    trainer = tiny_trainer(
        max_epochs=3, callbacks=[*callbacks, checkpoint], enable_checkpointing=True, default_root_dir=tmp_path
    )
    trainer.fit(module, datamodule=Data(), **kwargs)
    return checkpoint


def best_float_model(checkpoint: ModelCheckpoint, prefix: str = "model.") -> MLP:
    state = torch.load(checkpoint.best_model_path, weights_only=False)["state_dict"]
    model = mlp()
    model.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)})
    return model.eval()


@pytest.mark.parametrize(
    "config",
    [
        StaticQuantConfig(calibration_batches=2),
        DynamicQuantConfig(),
        BitsAndBytesConfig(),
        StaticQuantConfig(calibration_batches=2, engine="torchao"),
        DynamicQuantConfig(engine="torchao"),
    ],
    ids=repr,
)
def test_int8_copy_of_the_best_model_is_written_under_the_log_dir(config, tmp_path):
    torch.manual_seed(0)
    module = ClassifierModule(mlp(), learning_rate=0.02)
    callback = PostTrainingQuantization(config)
    checkpoint = fit(tmp_path, module, [callback])
    assert callback.artifact_path.parent == tmp_path / "quantized" and callback.artifact_path.is_file()
    quantized = load_quantized(callback.artifact_path, mlp())
    x = next(iter(loader(seed=3)))[0]
    with torch.no_grad():
        expected, actual = best_float_model(checkpoint)(x), quantized(x)
    assert (actual - expected).abs().max() <= 0.1 * expected.abs().max()
    # the checkpoint and the trained module are unchanged: plain float keys, float layers
    saved = torch.load(checkpoint.last_model_path, weights_only=False)
    assert set(saved["state_dict"]) == {f"model.{k}" for k in mlp().state_dict()}
    assert type(module.model.hidden[0]) is torch.nn.Linear
    result = tiny_trainer().test(ClassifierModule(mlp()), loader(seed=2), ckpt_path=checkpoint.best_model_path)
    assert 0.0 <= result[0]["test/acc"] <= 1.0


def test_distillation_student_with_pruning_is_quantized(tmp_path):
    torch.manual_seed(0)
    teacher = MLP(num_classes=3, in_features=20, hidden_sizes=[32])
    module = DistillationModule(student=mlp(), teacher=teacher, learning_rate=0.02)
    callback = PostTrainingQuantization(StaticQuantConfig(calibration_batches=2), checkpoint="last")
    fit(tmp_path, module, [MagnitudePruning(final_sparsity=0.5, start=0, verbose=False), callback])
    quantized = load_quantized(callback.artifact_path, mlp())
    weight = quantized.hidden[0].weight().int_repr()
    assert (weight == 0).float().mean() >= 0.45  # the pruned zeros survive quantization
    x = next(iter(loader(seed=3)))[0]
    with torch.no_grad():
        agreement = (quantized(x).argmax(-1) == module.student.eval()(x).argmax(-1)).float().mean()
    assert agreement >= 0.9


def test_static_without_validation_data_is_refused(tmp_path):
    module = ClassifierModule(mlp(), learning_rate=0.02)
    trainer = tiny_trainer(callbacks=[PostTrainingQuantization(StaticQuantConfig())], default_root_dir=tmp_path)
    with pytest.raises(ValueError, match="PostTrainingQuantization needs validation batches"):
        trainer.fit(module, loader())


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="for QAT use the QuantizationAwareTraining callback"):
        PostTrainingQuantization(QATConfig())
    with pytest.raises(ValueError, match="checkpoint must be 'best' or 'last'; got 'worst'"):
        PostTrainingQuantization(checkpoint="worst")
    with pytest.raises(ValueError, match="dirname must be a relative folder name"):
        PostTrainingQuantization(dirname="/abs")


def test_post_training_steps_alongside_qat_are_refused(tmp_path):
    from lightning_distill.lightning.callbacks import OnnxExport, QuantizationAwareTraining

    for callback in (PostTrainingQuantization(), OnnxExport()):
        trainer = tiny_trainer(callbacks=[QuantizationAwareTraining(), callback], default_root_dir=tmp_path)
        with pytest.raises(ValueError, match="QuantizationAwareTraining is in the same fit"):
            trainer.fit(ClassifierModule(mlp()), datamodule=Data())
