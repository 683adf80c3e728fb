"""Feature distillation by module name between two different CNNs, through the module and through the CLI."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import torchvision
import yaml
from conftest import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.losses import FeatureLoss
from lightning_distill.lightning.cli import DistillCLI, cli_main
from lightning_distill.lightning.modules import DistillationModule

STUDENT_KEY = "train/feature_loss/features.2_to_layer2"


class SmallCNN(nn.Module):
    """Student: a plain Sequential CNN on 8x8 digits, stride 2 (4x4 maps) and ``width`` channels."""

    def __init__(self, num_classes: int = 10, width: int = 4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.view(-1, 1, 8, 8)).flatten(1))


class Residual(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.conv(x)) + x)


class ResNetLike(nn.Module):
    """Teacher: a stem and two residual stages at full 8x8 resolution, 16 channels. ``shared_relu`` is called twice."""

    def __init__(self, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.stem = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.BatchNorm2d(width))
        self.shared_relu = nn.ReLU()
        self.layer1 = Residual(width)
        self.layer2 = Residual(width)
        self.unused = nn.Linear(3, 3)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.shared_relu(self.stem(x.view(-1, 1, 8, 8)))
        x = self.shared_relu(self.layer2(self.layer1(x)))
        return self.classifier(x.mean((2, 3)))


def _one_batch_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(32, 64, generator=generator)
    labels = torch.randint(0, 10, (32,), generator=generator)
    return DataLoader(TensorDataset(images, labels), batch_size=32)


class RecordMetric(pl.Callback):
    def __init__(self, key: str) -> None:
        self.key, self.values = key, []

    def on_train_batch_end(self, trainer: pl.Trainer, *args) -> None:
        self.values.append(trainer.callback_metrics[self.key].item())


def _module(loss: str = "mse", **kwargs) -> DistillationModule:
    feature = FeatureLoss(student_layer="features.2", teacher_layer="layer2", loss=loss, weight=2.0)
    return DistillationModule(SmallCNN(), ResNetLike(), learning_rate=0.02, feature_losses=[feature], **kwargs)


@pytest.mark.parametrize("loss", ["mse", "cosine"])
def test_feature_loss_between_two_different_cnns_falls_while_training(loss: str) -> None:
    module = _module(loss)
    projection = module.feature_losses[0].projection
    assert isinstance(projection, nn.Conv2d) and projection.weight.shape == (16, 4, 1, 1)  # 4 -> 16 channels
    before = projection.weight.detach().clone()
    teacher_state = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    record = RecordMetric(STUDENT_KEY)
    trainer = tiny_trainer(max_epochs=25, callbacks=[record], num_sanity_val_steps=0)
    trainer.fit(module, train_dataloaders=_one_batch_loader())

    assert len(record.values) == 25
    assert record.values[-1] < 0.7 * record.values[0], record.values
    metrics = trainer.callback_metrics
    total = metrics["train/soft_loss"] * 0.7 + metrics["train/hard_loss"] * 0.3 + metrics[STUDENT_KEY]
    torch.testing.assert_close(metrics["train/loss"], total, atol=1e-5, rtol=1e-5)
    assert not torch.equal(before, projection.weight)  # the projection is trained with the student
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert {id(p) for p in projection.parameters()} <= optimized
    for key, value in module.teacher.state_dict().items():
        torch.testing.assert_close(value, teacher_state[key])
    hooked = [m for m in (*module.student.modules(), *module.teacher.modules()) if m._forward_hooks]
    assert not hooked, "forward hooks outlived the training step"


def _bert(hidden: int, layers: int) -> nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=30, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2, intermediate_size=32
    )
    return BertForSequenceClassification(config)


def test_torchvision_and_hugging_face_layers_get_the_right_projection() -> None:
    mobilenet = torchvision.models.mobilenet_v3_small(weights=None, num_classes=10)
    resnet = torchvision.models.resnet18(weights=None, num_classes=10)
    # InvertedResidual and Conv2dNormActivation carry out_channels themselves: still feature maps, so a 1x1 conv.
    maps = FeatureLoss("features.3", "layer2")
    tokens = FeatureLoss("bert.encoder.layer.1", "bert.encoder.layer.3", loss="cosine")
    module = DistillationModule(mobilenet, resnet, feature_losses=[maps])
    assert isinstance(maps.projection, nn.Conv2d) and maps.projection.weight.shape == (128, 24, 1, 1)
    DistillationModule(_bert(16, 2), _bert(32, 4), feature_losses=[tokens])
    assert isinstance(tokens.projection, nn.Linear) and tokens.projection.weight.shape == (32, 16)

    images = TensorDataset(torch.rand(4, 3, 32, 32), torch.randint(0, 10, (4,)))
    trainer = tiny_trainer(max_steps=1)
    trainer.fit(module, train_dataloaders=DataLoader(images, batch_size=4))
    assert trainer.callback_metrics["train/feature_loss/features.3_to_layer2"] > 0


def test_wrong_layer_names_fail_at_construction_naming_the_modules() -> None:
    with pytest.raises(ValueError, match=r"student_layer 'feature.2' is not a module of the student.*features.2"):
        DistillationModule(SmallCNN(), ResNetLike(), feature_losses=[FeatureLoss("feature.2", "layer2")])
    with pytest.raises(ValueError, match=r"teacher_layer 'layer3' is not .*teacher \(ResNetLike\); closest: layer"):
        DistillationModule(SmallCNN(), ResNetLike(), feature_losses=[FeatureLoss("features.2", "layer3")])


def test_teacher_logit_cache_is_refused_with_feature_losses() -> None:
    with pytest.raises(ValueError, match=r"cache_teacher_logits caches logits only.*feature_losses"):
        _module(cache_teacher_logits=True)


@pytest.mark.parametrize(
    ("teacher_layer", "match"),
    [("shared_relu", "ran 2 times in one forward pass"), ("unused", "'unused' did not run")],
)
def test_modules_that_run_twice_or_never_are_explained(teacher_layer: str, match: str) -> None:
    feature = FeatureLoss("features.1", teacher_layer, student_width=4, teacher_width=16)
    module = DistillationModule(SmallCNN(), ResNetLike(), feature_losses=[feature])
    with pytest.raises(ValueError, match=match):
        tiny_trainer(max_steps=1).fit(module, train_dataloaders=_one_batch_loader())
    assert not module.teacher.shared_relu._forward_hooks and not module.teacher.unused._forward_hooks


def test_cli_fit_with_feature_losses_and_checkpoint_reload(tmp_path: Path) -> None:
    feature = {
        "class_path": "lightning_distill.core.losses.FeatureLoss",
        "init_args": {"student_layer": "features.2", "teacher_layer": "layer2", "weight": 1.0, "loss": "cosine"},
    }
    config = {
        "seed_everything": 0,
        "model": {
            "class_path": "lightning_distill.lightning.modules.DistillationModule",
            "init_args": {
                "student": {"class_path": f"{__name__}.SmallCNN"},
                "teacher": {"class_path": f"{__name__}.ResNetLike"},
                "feature_losses": [feature],
            },
        },
        "data": {"class_path": "lightning_distill.lightning.data.DigitsDataModule", "init_args": {"batch_size": 16}},
        "trainer": {
            "max_steps": 2,
            "limit_val_batches": 1,
            "num_sanity_val_steps": 0,
            "logger": False,
            "enable_progress_bar": False,
            "default_root_dir": str(tmp_path),
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"dirpath": str(tmp_path), "filename": "last"},
                }
            ],
        },
    }
    path = tmp_path / "feature.yaml"
    path.write_text(yaml.safe_dump(config))
    parsed = DistillCLI(args=["--config", str(path)], run=False).model.feature_losses[0]
    assert (parsed.student_layer, parsed.teacher_layer, parsed.loss) == ("features.2", "layer2", "cosine")
    assert parsed.projection.out_channels == 16
    cli = cli_main({"subcommand": "fit", "fit": config})
    assert cli.trainer.global_step == 2 and STUDENT_KEY in cli.trainer.callback_metrics
    state = torch.load(tmp_path / "last.ckpt", weights_only=True)["state_dict"]
    assert {"feature_losses.0.projection.weight", "feature_losses.0.projection.bias"} <= set(state)
    assert not any(key.startswith("teacher.") for key in state)

    reloaded = DistillationModule(SmallCNN(), ResNetLike(), feature_losses=[FeatureLoss("features.2", "layer2")])
    reloaded.load_state_dict(state)  # strict: the projection is in the checkpoint and in the rebuilt module
    trained = cli.model.feature_losses[0].projection.weight
    torch.testing.assert_close(reloaded.feature_losses[0].projection.weight, trained)
    torch.testing.assert_close(reloaded.student.classifier.weight, cli.model.student.classifier.weight)
