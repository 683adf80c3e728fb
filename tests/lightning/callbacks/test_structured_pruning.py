from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset
from transformers import BertConfig, BertForSequenceClassification

from lightning_distill.core.models import MLP
from lightning_distill.core.pruning import load_pruned, save_pruned
from lightning_distill.lightning.callbacks import StructuredPruning
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule


def mlp_loader(n: int = 96, batch_size: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 20, generator=generator)
    return DataLoader(TensorDataset(x, x[:, :3].argmax(1)), batch_size=batch_size)


def mlp_module(seed: int = 0) -> ClassifierModule:
    torch.manual_seed(seed)
    return ClassifierModule(MLP(num_classes=3, in_features=20, hidden_sizes=[16, 8]), learning_rate=0.02)


def tiny_bert(seed: int = 0) -> BertForSequenceClassification:
    torch.manual_seed(seed)
    config = BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=100, num_labels=3
    )
    return BertForSequenceClassification(config)


class _Dicts(torch.utils.data.Dataset):
    def __init__(self, n: int = 48) -> None:
        generator = torch.Generator().manual_seed(2)
        self.ids = torch.randint(5, 100, (n, 8), generator=generator)
        self.labels = self.ids[:, 0] % 3

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"input_ids": self.ids[i], "attention_mask": torch.ones(8, dtype=torch.long), "labels": self.labels[i]}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_shrinks_by_the_expected_amount_and_keeps_training() -> None:
    pruning = StructuredPruning(0.5, start=0, end=1, schedule="linear", verbose=False)
    module = mlp_module()
    trainer = tiny_trainer(max_epochs=4, callbacks=[pruning])
    trainer.fit(module, mlp_loader())
    # 20 -> 16 -> 8 -> 3 becomes 20 -> 8 -> 4 -> 3 (25% at epoch 0, 50% at epoch 1)
    assert [h["pruning/units/model.hidden.0"] for h in pruning.history] == [12, 8]
    assert n_params(module.model) == (20 * 8 + 8) + (8 * 4 + 4) + (4 * 3 + 3)
    assert pruning.history[-1]["pruning/parameters"] == n_params(module.model)
    assert pruning.pruned == ["model.hidden.0 (16 neurons)", "model.hidden.2 (8 neurons)"]
    assert pruning.skipped == {"model.classifier": "its outputs are the model's outputs"}
    # the optimizer holds the same (cut) parameters, so the pruned model still learns
    assert trainer.optimizers[0].state[module.model.hidden[0].weight]["exp_avg"].shape == (8, 20)
    x, y = mlp_loader().dataset.tensors
    accuracy = float((module.model(x).argmax(1) == y).float().mean())
    assert accuracy > 0.6


def test_bert_in_a_distillation_module_loses_heads_and_neurons_but_not_the_teacher() -> None:
    teacher = tiny_bert(seed=1)
    teacher_params = n_params(teacher)
    student = tiny_bert()
    before = n_params(student)
    module = DistillationModule(student, teacher, learning_rate=1e-3)
    pruning = StructuredPruning(0.5, verbose=False)
    tiny_trainer(max_epochs=1, callbacks=[pruning]).fit(module, DataLoader(_Dicts(), batch_size=16))
    assert before - n_params(student) == 2 * (2 * 8 * (3 * 33 + 32) + 32 * (33 + 32))
    assert n_params(teacher) == teacher_params
    assert pruning.skipped["teacher"] == "excluded by pattern 'teacher.*'"  # not traced at all
    encoder = [name for name in pruning.skipped if name.startswith("student.bert.encoder")]
    assert encoder == ["student.bert.encoder.layer.0.attention.output.dense"]  # the embedding width
    batch = next(iter(DataLoader(_Dicts(), batch_size=4)))
    logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape == (4, 3) and torch.isfinite(logits).all()


def test_resuming_mid_schedule_gives_the_same_model_and_test_loads_the_checkpoint(tmp_path: Path) -> None:
    def run(ckpt_path: str | None, callbacks: list) -> tuple[StructuredPruning, ClassifierModule]:
        pruning = StructuredPruning(0.75, start=0, end=2, schedule="cubic", verbose=False)
        module = mlp_module()
        trainer = tiny_trainer(max_epochs=4, callbacks=[pruning, *callbacks], enable_checkpointing=bool(callbacks))
        trainer.fit(module, mlp_loader(), ckpt_path=ckpt_path)
        return pruning, module

    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
    full, full_module = run(None, [checkpoint])
    resumed, resumed_module = run(str(tmp_path / "epoch=0.ckpt"), [])
    assert [h["point"] for h in resumed.history] == [0, 1, 2]
    assert resumed.history == full.history
    for (name, a), b in zip(full_module.state_dict().items(), resumed_module.state_dict().values(), strict=True):
        assert torch.equal(a, b), name

    # a fresh, unpruned module tests from the pruned checkpoint: the callback shrinks it to the checkpoint's shapes
    fresh = mlp_module(seed=5)
    trainer = tiny_trainer(callbacks=[StructuredPruning(0.75, start=0, end=2, verbose=False)])
    trainer.test(fresh, mlp_loader(), ckpt_path=str(tmp_path / "epoch=3.ckpt"), verbose=False)
    assert torch.equal(fresh.model.hidden[0].weight, full_module.model.hidden[0].weight)
    save_pruned(fresh.model, tmp_path / "deploy")
    deployed = load_pruned(MLP(num_classes=3, in_features=20, hidden_sizes=[16, 8]), tmp_path / "deploy")
    x = torch.randn(3, 20)
    assert torch.equal(deployed.eval()(x), full_module.model.eval()(x))


def test_taylor_importance_gathers_scores_before_pruning() -> None:
    pruning = StructuredPruning(0.5, start=1, importance="taylor", unit_types=["neurons"], verbose=False)
    module = mlp_module()
    tiny_trainer(max_epochs=2, callbacks=[pruning]).fit(module, mlp_loader())
    assert [h["point"] for h in pruning.history] == [1]
    assert module.model.hidden[0].out_features == 8 and module.model.hidden[2].out_features == 4
    assert pruning.scores == {}  # scores are reset after each pruning point and not gathered after the last


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"final_sparsity": 1.0}, r"final_sparsity must be in \[0, 1\), got 1.0"),
        ({"start": 2, "end": 1}, r"end must be >= start=2, got end=1"),
        ({"importance": "taylor"}, r"importance='taylor' needs gradients .* got start=0"),
        ({"importance": "random"}, r"importance must be 'l1' or 'taylor', got 'random'"),
        ({"unit_types": ["layers"]}, r"unit_types must be a non-empty list of \['channels', 'neurons', 'heads'\]"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StructuredPruning(**kwargs)


def test_bad_input_that_needs_the_model_fails_before_training() -> None:
    module = ClassifierModule(MLP(num_classes=3, in_features=20, hidden_sizes=[2]))
    with pytest.raises(ValueError, match=r"would remove every unit of model.hidden.0 \(2 units\)"):
        tiny_trainer(callbacks=[StructuredPruning(0.8)]).fit(module, mlp_loader())
    with pytest.raises(ValueError, match=r"include=\['encoder.\*'\].*selects no group"):
        tiny_trainer(callbacks=[StructuredPruning(0.5, include=["encoder.*"])]).fit(mlp_module(), mlp_loader())
    with pytest.raises(ValueError, match=r"ends at epoch 2 .*trainer.max_epochs=2"):
        tiny_trainer(max_epochs=2, callbacks=[StructuredPruning(0.5, end=2)]).fit(mlp_module(), mlp_loader())


def test_summary_lists_units_removed_resulting_shapes_and_skipped_layers() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 16),
        torch.nn.ReLU(),
        torch.nn.Linear(16, 3),
    )
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 6, 6, generator=generator)
    loader = DataLoader(TensorDataset(x, x.flatten(1)[:, :3].argmax(1)), batch_size=8)
    pruning = StructuredPruning(0.5, verbose=False)
    tiny_trainer(callbacks=[pruning]).fit(ClassifierModule(net), loader)
    assert pruning.summary() == [
        {
            "layer": "model.0",
            "type": "Conv2d",
            "status": "pruned",
            "reason": None,
            "kind": "channels",
            "units_before": 4,
            "units_after": 2,
            "removed": 2,
            "shapes": {"model.0": [2, 1], "model.3": [8, 32]},  # each channel owned 16 flattened inputs of model.3
        },
        {
            "layer": "model.3",
            "type": "Linear",
            "status": "pruned",
            "reason": None,
            "kind": "neurons",
            "units_before": 16,
            "units_after": 8,
            "removed": 8,
            "shapes": {"model.3": [8, 32], "model.5": [3, 8]},
        },
        {"layer": "model.5", "type": "Linear", "status": "skipped", "reason": "its outputs are the model's outputs"},
    ]
    assert (net[3].out_features, net[5].in_features, net[0].out_channels) == (8, 8, 2)


def test_a_model_without_prunable_units_fails_before_training_naming_what_it_has() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 6), torch.nn.Flatten())
    loader = DataLoader(TensorDataset(torch.randn(8, 1, 6, 6), torch.zeros(8, dtype=torch.long)), batch_size=4)
    trainer = tiny_trainer(callbacks=[StructuredPruning(0.5)])
    with pytest.raises(
        ValueError, match=r"selects no group of prunable units; found model.0: its outputs are the model's outputs"
    ):
        trainer.fit(ClassifierModule(net), loader)
    assert trainer.global_step == 0


class _CNNModule(pl.LightningModule):
    """A LightningModule of a user's own around a small CNN (BatchNorm, a residual addition)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU())
        self.block = torch.nn.Sequential(torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.BatchNorm2d(8))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x)
        return self.head(torch.relu(y + self.block(y)).mean(dim=(2, 3)))

    def training_step(self, batch: tuple, batch_idx: int) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def test_step(self, batch: tuple, batch_idx: int) -> None:
        self.log("test/loss", torch.nn.functional.cross_entropy(self(batch[0]), batch[1]))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=0.01)


def test_a_cnn_lightning_module_loses_channels_during_fit_and_tests_from_its_checkpoint(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(32, 1, 8, 8, generator=generator)
    loader = DataLoader(TensorDataset(x, x.mean(dim=(1, 2, 3)).gt(0).long()), batch_size=8)
    torch.manual_seed(0)
    module = _CNNModule()
    pruning = StructuredPruning(0.5, start=1, unit="step", verbose=False)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="last")
    trainer = tiny_trainer(max_epochs=2, callbacks=[pruning, checkpoint], enable_checkpointing=True)
    trainer.fit(module, loader)
    # stem and block channels are one group (they are added); the head's outputs are the model's outputs
    assert pruning.pruned == ["stem.0 (8 channels)"]
    assert pruning.skipped == {"head": "its outputs are the model's outputs"}
    assert [h["pruning/units/stem.0"] for h in pruning.history] == [4]
    assert (module.stem[0].out_channels, module.block[0].in_channels, module.head.in_features) == (4, 4, 4)
    assert module.stem[1].running_mean.shape == (4,)

    torch.manual_seed(5)
    fresh = _CNNModule()  # unpruned; the callback's hook shrinks it to the checkpoint's shapes
    tester = tiny_trainer(callbacks=[StructuredPruning(0.5, start=1, unit="step", verbose=False)])
    loss = tester.test(fresh, loader, ckpt_path=checkpoint.best_model_path, verbose=False)[0]["test/loss"]
    assert fresh.block[0].weight.shape == (4, 4, 3, 3)
    for (name, a), b in zip(module.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert loss == pytest.approx(tiny_trainer().test(module, loader, verbose=False)[0]["test/loss"])


def test_feature_loss_projection_follows_the_pruned_student_channels(tmp_path: Path) -> None:
    """Channels of a student layer read by a FeatureLoss are pruned with the projection's inputs; the fit goes on and
    the checkpoint (student and projection) loads into a fresh module for testing."""
    from lightning_distill.core.losses import FeatureLoss
    from lightning_distill.core.models import SmallCNN

    generator = torch.Generator().manual_seed(3)
    x = torch.randn(32, 1, 16, 16, generator=generator)
    loader = DataLoader(TensorDataset(x, x.mean(dim=(1, 2, 3)).gt(0).long()), batch_size=8)

    def module() -> DistillationModule:
        torch.manual_seed(0)
        return DistillationModule(
            student=SmallCNN(num_classes=2, widths=[8, 8]),
            teacher=SmallCNN(num_classes=2, widths=[16, 12]),
            feature_losses=[FeatureLoss(student_layer="features.1", teacher_layer="features.1")],
        )

    distill = module()
    projection = distill.feature_losses[0].projection
    assert (projection.in_channels, projection.out_channels) == (8, 12)
    pruning = StructuredPruning(
        0.5, start=1, unit="step", verbose=False, unit_types=["channels"], include=["student.*"]
    )
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="last")
    trainer = tiny_trainer(max_epochs=2, callbacks=[pruning, checkpoint], enable_checkpointing=True)
    trainer.fit(distill, loader)
    assert distill.student.features[1][0].out_channels == 4
    assert projection.weight.shape == (12, 4, 1, 1) and projection.in_channels == 4  # followed the student
    assert distill.teacher.features[1][0].out_channels == 12  # the teacher is never pruned

    fresh = module()
    tiny_trainer().test(fresh, loader, ckpt_path=checkpoint.best_model_path, verbose=False)
    assert fresh.feature_losses[0].projection.weight.shape == (12, 4, 1, 1)
    for (name, a), b in zip(distill.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
