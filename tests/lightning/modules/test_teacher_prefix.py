"""Teachers and deployable models from any LightningModule's checkpoint: the weights' prefix found or named."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.lightning.modules import DistillationModule
from lightning_distill.lightning.modules.deployable import load_deployable


def _mlp(hidden: int = 16) -> MLP:
    return MLP(num_classes=3, in_features=8, hidden_sizes=[hidden])


class UserModule(pl.LightningModule):
    """A user's own classifier: the model sits in ``self.backbone``, as in many LightningModules."""

    def __init__(self, second: bool = False) -> None:
        super().__init__()
        self.backbone = _mlp()
        self.ema = _mlp() if second else None  # a second copy of the architecture: two prefixes fit

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.backbone(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.5)


def _fit_user_module(tmp_path: Path, second: bool = False) -> tuple[UserModule, str]:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(32, 8), torch.randint(0, 3, (32,)))
    module = UserModule(second)
    trainer = tiny_trainer(max_steps=3)
    trainer.fit(module, DataLoader(data, batch_size=8))
    path = str(tmp_path / "user.ckpt")
    trainer.save_checkpoint(path)
    return module.eval(), path


def test_teacher_found_under_the_users_prefix(tmp_path: Path) -> None:
    trained, path = _fit_user_module(tmp_path)
    module = DistillationModule(_mlp(4), _mlp(), teacher_checkpoint=path)
    x = torch.randn(5, 8)
    assert torch.equal(module.teacher(x), trained.backbone(x))


def test_teacher_prefix_can_be_named(tmp_path: Path) -> None:
    trained, path = _fit_user_module(tmp_path, second=True)
    for prefix in ("ema", "backbone."):
        module = DistillationModule(_mlp(4), _mlp(), teacher_checkpoint=path, teacher_checkpoint_prefix=prefix)
        x = torch.randn(5, 8)
        assert torch.equal(module.teacher(x), getattr(trained, prefix.rstrip("."))(x))


def test_several_fitting_prefixes_are_listed(tmp_path: Path) -> None:
    _, path = _fit_user_module(tmp_path, second=True)
    with pytest.raises(ValueError, match=r"several prefixes: \['backbone\.', 'ema\.'\]; set teacher_checkpoint_prefix"):
        DistillationModule(_mlp(4), _mlp(), teacher_checkpoint=path)


def test_wrong_architecture_lists_prefixes_and_the_option(tmp_path: Path) -> None:
    _, path = _fit_user_module(tmp_path)
    other = MLP(num_classes=3, in_features=8, hidden_sizes=[16, 16])
    with pytest.raises(ValueError, match=r"prefixes are: 'backbone\.' \(4 keys\).*set teacher_checkpoint_prefix") as e:
        DistillationModule(_mlp(4), other, teacher_checkpoint=path)
    assert "the config" not in str(e.value)
    with pytest.raises(ValueError, match=r"under teacher_checkpoint_prefix='backbone\.'.*missing there are e\.g\."):
        DistillationModule(_mlp(4), other, teacher_checkpoint=path, teacher_checkpoint_prefix="backbone")


class Wrapper(nn.Module):
    """Holds the model as ``model``: what load_deployable finds by itself."""

    def __init__(self) -> None:
        super().__init__()
        self.model = _mlp()


def test_deployable_found_under_the_users_prefix(tmp_path: Path) -> None:
    trained, path = _fit_user_module(tmp_path)
    model = load_deployable(Wrapper(), path)
    x = torch.randn(5, 8)
    assert torch.equal(model(x), trained.backbone(x))
    plain = load_deployable(Wrapper(), trained.backbone.state_dict())
    assert torch.equal(plain(x), trained.backbone(x))


def test_deployable_with_several_fitting_prefixes_needs_one_named(tmp_path: Path) -> None:
    trained, path = _fit_user_module(tmp_path, second=True)
    with pytest.raises(ValueError, match=r"fit under each of \['backbone\.', 'ema\.'\].*pass checkpoint_prefix"):
        load_deployable(Wrapper(), path)
    model = load_deployable(Wrapper(), path, checkpoint_prefix="ema")
    x = torch.randn(5, 8)
    assert torch.equal(model(x), trained.ema(x))
