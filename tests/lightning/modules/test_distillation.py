from pathlib import Path

import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint

from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import MLP
from lightning_distill.lightning.data import DigitsDataModule
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule


def _teacher() -> MLP:
    return MLP(num_classes=10, in_features=64, hidden_sizes=[32], dropout=0.5)


def _student() -> MLP:
    return MLP(num_classes=10, in_features=64, hidden_sizes=[8])


def _fit_teacher(tmp_path: Path) -> str:
    module = ClassifierModule(_teacher(), num_classes=10, learning_rate=0.01)
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="teacher")
    tiny_trainer(max_epochs=2, enable_checkpointing=True, callbacks=[checkpoint]).fit(module, DigitsDataModule())
    return checkpoint.best_model_path or str(tmp_path / "teacher.ckpt")


def test_teacher_frozen_in_eval_mode_and_out_of_checkpoint(tmp_path: Path) -> None:
    teacher_ckpt = _fit_teacher(tmp_path)
    teacher = _teacher()
    module = DistillationModule(_student(), teacher, teacher_checkpoint=teacher_ckpt, num_classes=10)
    trained_teacher_state = {k: v.clone() for k, v in teacher.state_dict().items()}
    modes: list[bool] = []
    teacher.register_forward_hook(lambda mod, args, out: modes.append(mod.training))
    dropouts = [m for m in teacher.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts, "the test needs a teacher with dropout"
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="student")
    trainer = tiny_trainer(max_epochs=2, enable_checkpointing=True, callbacks=[checkpoint])
    trainer.fit(module, DigitsDataModule())

    assert modes and not any(modes), "the teacher ran in training mode during distillation"
    assert all(not m.training for m in dropouts)
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        torch.testing.assert_close(value, trained_teacher_state[key])
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.student.parameters()}
    assert module.teacher_val_acc is not None and module.teacher_val_acc > 0.3

    state = torch.load(checkpoint.best_model_path, weights_only=False)["state_dict"]
    assert state and all(k.startswith("student.") for k in state)
    # The student checkpoint loads back strictly into a module with a fresh teacher.
    reloaded = DistillationModule(_student(), _teacher(), num_classes=10)
    reloaded.load_state_dict(state)
    for key, value in module.student.state_dict().items():
        torch.testing.assert_close(reloaded.student.state_dict()[key], value)


def test_teacher_stays_in_eval_when_module_is_set_to_train() -> None:
    module = DistillationModule(_student(), _teacher())
    module.train()
    assert module.student.training and not module.teacher.training


def test_class_count_mismatch_names_both_numbers() -> None:
    with pytest.raises(ValueError, match="teacher has 151 classes but the student has 10"):
        DistillationModule(_student(), MLP(num_classes=151, in_features=64, hidden_sizes=[8]))


def test_model_class_count_must_match_data() -> None:
    with pytest.raises(ValueError, match="teacher has 10 classes but the data module has 151"):
        DistillationModule(_student(), _teacher(), num_classes=151)
    with pytest.raises(ValueError, match="model has 10 classes but the data module has 3"):
        ClassifierModule(_student(), num_classes=3)


def test_missing_teacher_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"teacher_checkpoint .*nope.ckpt' does not exist"):
        DistillationModule(_student(), _teacher(), teacher_checkpoint=str(tmp_path / "nope.ckpt"))


def test_teacher_checkpoint_of_other_shape_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "wide.pt"
    torch.save(MLP(num_classes=10, in_features=64, hidden_sizes=[16]).state_dict(), path)
    with pytest.raises(ValueError, match=r"hidden.0.weight has shape \(16, 64\) in the checkpoint but \(32, 64\)"):
        DistillationModule(_student(), _teacher(), teacher_checkpoint=str(path))


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"temperature": 0}, "temperature"), ({"soft_target_weight": 2}, "soft")]
)
def test_bad_loss_settings_fail_before_training(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        DistillationModule(_student(), _teacher(), loss=KDLoss(**kwargs))


def test_distillation_learns(tmp_path: Path) -> None:
    teacher_ckpt = _fit_teacher(tmp_path)
    module = DistillationModule(_student(), _teacher(), teacher_checkpoint=teacher_ckpt, learning_rate=0.01)
    trainer = tiny_trainer(max_epochs=3)
    data = DigitsDataModule()
    before = trainer.test(module, data, verbose=False)[0]["test/acc"]
    trainer.fit(module, data)
    after = trainer.test(module, data, verbose=False)[0]["test/acc"]
    assert after > before + 0.3
