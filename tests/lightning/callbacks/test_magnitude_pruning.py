from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.lightning.callbacks import MagnitudePruning
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule


def loader(n: int = 64, batch_size: int = 16) -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(n, 20, generator=generator)
    y = (x[:, :3].argmax(1)).long()
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def module(seed: int = 0) -> ClassifierModule:
    torch.manual_seed(seed)
    return ClassifierModule(MLP(num_classes=3, in_features=20, hidden_sizes=[16]), learning_rate=0.05, weight_decay=0.1)


class ZerosHold(Callback):
    """After every optimizer step, checks that every masked weight is still exactly zero."""

    def __init__(self, pruning: MagnitudePruning) -> None:
        self.pruning = pruning
        self.checked = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, idx: int) -> None:
        params = dict(pl_module.named_parameters())
        for name, mask in self.pruning.masks.items():
            assert torch.count_nonzero(params[name].detach()[~mask]) == 0
            self.checked += int((~mask).sum())


def test_masked_weights_stay_exactly_zero_through_training() -> None:
    pruning = MagnitudePruning(final_sparsity=0.6, start=0, end=2, schedule="linear", verbose=False)
    probe = ZerosHold(pruning)
    model = module()
    tiny_trainer(max_epochs=4, callbacks=[pruning, probe]).fit(model, loader())
    assert probe.checked > 0
    assert [round(h["target"], 4) for h in pruning.history] == [0.2, 0.4, 0.6]
    # global scope: the measured overall sparsity is the target up to rounding
    weights = [model.model.hidden[0].weight, model.model.classifier.weight]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert zeros == round(0.6 * sum(w.numel() for w in weights))
    assert pruning.last_sparsity["overall"] == pytest.approx(0.6, abs=1e-3)


def test_cubic_schedule_in_steps_hits_target_at_its_end_step() -> None:
    pruning = MagnitudePruning(0.8, start=1, end=7, unit="step", frequency=3, scope="layer", verbose=False)
    model = module()
    tiny_trainer(max_epochs=3, max_steps=12, callbacks=[pruning]).fit(model, loader())
    assert [h["point"] for h in pruning.history] == [1, 4, 7]
    targets = [h["target"] for h in pruning.history]
    assert targets[0] == pytest.approx(0.8 * (1 - (2 / 3) ** 3)) and targets[-1] == 0.8
    assert pruning.history[-1]["pruning/sparsity/model.hidden.0.weight"] == pytest.approx(0.8, abs=1 / 320)
    assert pruning.history[-1]["pruning/sparsity/model.classifier.weight"] == pytest.approx(0.8, abs=1 / 48)


def test_resuming_mid_schedule_gives_the_same_masks(tmp_path: Path) -> None:
    def run(ckpt_path: str | None, callbacks: list) -> tuple[MagnitudePruning, ClassifierModule]:
        pruning = MagnitudePruning(0.7, start=0, end=3, schedule="cubic", verbose=False)
        model = module()
        trainer = tiny_trainer(max_epochs=4, callbacks=[pruning, *callbacks], enable_checkpointing=bool(callbacks))
        trainer.fit(model, loader(), ckpt_path=ckpt_path)
        return pruning, model

    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="{epoch}", save_top_k=-1)
    full, full_model = run(None, [checkpoint])
    resumed, resumed_model = run(str(tmp_path / "epoch=1.ckpt"), [])
    assert [h["point"] for h in resumed.history] == [0, 1, 2, 3]
    assert full.masks.keys() == resumed.masks.keys()
    for name in full.masks:
        assert torch.equal(full.masks[name], resumed.masks[name])
    for (name, a), b in zip(full_model.state_dict().items(), resumed_model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_callback_reused_for_a_second_fit_prunes_the_new_model_too() -> None:
    pruning = MagnitudePruning(0.5, verbose=False)
    for seed in (0, 1):
        model = module(seed)
        tiny_trainer(callbacks=[pruning]).fit(model, loader())
        assert len(pruning.history) == 1
        assert float((model.model.hidden[0].weight == 0).float().mean()) > 0.3


def test_teacher_is_never_pruned_and_skips_are_reported() -> None:
    torch.manual_seed(0)
    teacher = MLP(num_classes=3, in_features=20, hidden_sizes=[32])
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    distill = DistillationModule(MLP(num_classes=3, in_features=20, hidden_sizes=[8]), teacher, learning_rate=0.05)
    pruning = MagnitudePruning(0.5, include=["*"], exclude=["teacher.*", "*.classifier"], scope="layer")
    tiny_trainer(max_epochs=1, callbacks=[pruning]).fit(distill, loader())
    assert list(pruning.masks) == ["student.hidden.0.weight"]
    assert float((distill.student.hidden[0].weight == 0).float().mean()) == 0.5
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key])
    assert pruning.pruned == ["student.hidden.0.weight"]
    assert pruning.skipped == {
        "student.classifier": "excluded by pattern '*.classifier'",
        "teacher.hidden.0": "excluded by pattern 'teacher.*'",
        "teacher.classifier": "excluded by pattern 'teacher.*'",
    }


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"final_sparsity": 1.0}, r"final_sparsity must be in \[0, 1\), got 1.0"),
        ({"final_sparsity": -0.5}, r"final_sparsity must be in \[0, 1\)"),
        ({"start": 3, "end": 1}, r"end must be >= start=3, got end=1"),
        ({"scope": "model"}, r"scope must be 'global' or 'layer', got 'model'"),
        ({"layer_types": ["Dense"]}, r"layer_types must be a non-empty list of"),
        ({"include": "model.*"}, r"include must be a list of non-empty glob patterns"),
    ],
)
def test_bad_arguments_fail_at_construction(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        MagnitudePruning(**kwargs)


def test_bad_arguments_that_need_the_trainer_fail_before_training() -> None:
    with pytest.raises(ValueError, match=r"ends at epoch 5 .* epochs 0..2 \(trainer.max_epochs=3\)"):
        tiny_trainer(max_epochs=3, callbacks=[MagnitudePruning(0.5, start=1, end=5)]).fit(module(), loader())
    with pytest.raises(ValueError, match=r"include=\['encoder.\*'\].*selects no trainable Linear"):
        tiny_trainer(callbacks=[MagnitudePruning(0.5, include=["encoder.*"])]).fit(module(), loader())


def image_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(32, 1, 6, 6, generator=generator)
    return DataLoader(TensorDataset(x, x.flatten(1)[:, :3].argmax(1)), batch_size=8)


def test_conv_layers_left_out_by_default_are_named_with_the_reason_in_the_log_and_summary(
    lightning_log: pytest.LogCaptureFixture,
) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(64, 3))
    pruning = MagnitudePruning(0.5)
    tiny_trainer(callbacks=[pruning]).fit(ClassifierModule(net), image_loader())
    reason = "Conv2d is not in layer_types=['Linear']; add 'Conv2d' to layer_types to prune it"
    assert pruning.summary() == [
        {
            "layer": "model.3",
            "type": "Linear",
            "status": "pruned",
            "reason": None,
            "shape": [3, 64],
            "weights": 192,
            "masked": 96,
            "sparsity": 0.5,
        },
        {"layer": "model.0", "type": "Conv2d", "status": "skipped", "reason": reason},
    ]
    assert int((net[3].weight == 0).sum()) == 96 and int((net[0].weight == 0).sum()) == 0
    # named when the layers are chosen (setup) and again in the summary at the end of fit
    assert lightning_log.text.count(f"skipped model.0 (Conv2d): {reason}") == 2
    assert "pruned  model.3 (Linear): 96 of 192 weights [3, 64] masked to zero, sparsity 0.500" in lightning_log.text


def test_a_model_without_a_selected_layer_fails_before_training_naming_what_it_has() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 6), nn.Flatten())
    trainer = tiny_trainer(callbacks=[MagnitudePruning(0.5)])
    with pytest.raises(
        ValueError, match=r"selects no trainable Linear layer; found model.0 \(model.0: Conv2d is not in layer_types"
    ):
        trainer.fit(ClassifierModule(net), image_loader())
    assert trainer.global_step == 0
