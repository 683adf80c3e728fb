"""No silent NaN: non-finite inputs, losses and teacher logits stop the fit with a message naming the batch."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_trainer
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from lightning_distill.core.models import MLP
from lightning_distill.lightning.data import DigitsDataModule
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule
from lightning_distill.lightning.modules._finite import CHECK_FIRST_BATCHES


def _loader(rows: int = 160, bad: tuple[int, int] | None = None, value: float = math.nan) -> DataLoader:
    """8 features, 2 classes, batches of 8 in order; ``bad`` = (row, feature) set to ``value``."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(rows, 8, generator=generator)
    y = (x[:, 0] > 0).long()
    if bad is not None:
        x[bad] = value
    return DataLoader(TensorDataset(x, y), batch_size=8)


def _mlp() -> MLP:
    return MLP(num_classes=2, in_features=8, hidden_sizes=[16])


def _state(model: nn.Module) -> dict[str, Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_nan_feature_stops_the_fit_naming_the_batch_and_row_before_any_weight_changes() -> None:
    model = _mlp()
    module = ClassifierModule(model, num_classes=2, learning_rate=0.01)
    # row 37 is row 5 of batch 4; batches 0-3 train, so the weights of batch 3's step must survive
    with pytest.raises(ValueError, match=r"inputs of training epoch 0, batch 4 \(global step 4\): batch\[0\] has 1 "):
        tiny_trainer().fit(module, _loader(bad=(37, 3)))
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_a_nan_feature_after_the_first_batches_is_named_through_the_loss() -> None:
    row = 8 * (CHECK_FIRST_BATCHES + 2) + 6  # beyond the batches whose inputs are read every step
    with pytest.raises(ValueError, match=rf"batch {CHECK_FIRST_BATCHES + 2} .*rows \[6\] of the batch"):
        tiny_trainer().fit(ClassifierModule(_mlp(), learning_rate=0.01), _loader(bad=(row, 0), value=math.inf))


class _Cleaning(nn.Module):
    """A model that hides non-finite inputs: only the check on the first batches' inputs can see them."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(8, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(torch.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0))


def test_non_finite_inputs_a_model_would_hide_are_refused_in_the_first_batches() -> None:
    with pytest.raises(ValueError, match=r"inputs of training epoch 0, batch 2 .*rows \[1\] of the batch"):
        tiny_trainer().fit(ClassifierModule(_Cleaning(), learning_rate=0.01), _loader(bad=(17, 2)))


class _Indexed(Dataset):
    def __init__(self, bad_row: int) -> None:
        self.x = torch.randn(32, 8)
        self.x[bad_row, 1] = math.nan

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        return {"x": self.x[i], "labels": torch.tensor(i % 2), "index": torch.tensor(i)}


def test_a_batch_with_an_index_names_the_examples() -> None:
    loader = DataLoader(_Indexed(bad_row=13), batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(1))
    with pytest.raises(
        ValueError,
        match=r"batch\['x'\] has 1 non-finite of 64 values, in rows \[\d\] of the batch "
        r"\(the examples with index \[13\]\)",
    ):
        tiny_trainer().fit(ClassifierModule(_mlp(), learning_rate=0.01), loader)


@pytest.mark.parametrize("shuffle", [False, True])
def test_a_tuple_batch_with_an_index_names_the_examples(shuffle: bool) -> None:
    """(inputs, labels, index) batches, as the data modules yield with return_index=True."""
    x = torch.randn(32, 8)
    x[21, 4] = math.nan
    dataset = TensorDataset(x, torch.arange(32) % 2, torch.arange(32))
    loader = DataLoader(dataset, batch_size=8, shuffle=shuffle, generator=torch.Generator().manual_seed(1))
    with pytest.raises(ValueError, match=r"batch\[0\] has 1 non-finite of 64 values, in rows \[\d\] of the batch "
                                         r"\(the examples with index \[21\]\)"):  # fmt: skip
        tiny_trainer().fit(ClassifierModule(_mlp(), learning_rate=0.01), loader)


def test_a_third_item_that_is_no_index_is_not_named_as_one() -> None:
    x = torch.randn(32, 8)
    x[21, 4] = math.nan
    weights = torch.rand(32)
    loader = DataLoader(TensorDataset(x, torch.arange(32) % 2, weights), batch_size=8)
    with pytest.raises(ValueError, match=r"in rows \[5\] of the batch\. Fix"):
        tiny_trainer().fit(ClassifierModule(_mlp(), learning_rate=0.01), loader)


def test_a_diverging_learning_rate_stops_the_fit_with_the_loss_message() -> None:
    module = ClassifierModule(_mlp(), num_classes=2, learning_rate=1e30)
    expected = (
        r"the training loss is (nan|inf) at epoch 0, batch [1-9]\d* .*with finite inputs: the model's outputs "
        r"overflowed \(its largest weight is 1e\+30 .*lower learning_rate \(now 1e\+30\)"
    )
    with pytest.raises(ValueError, match=expected):
        tiny_trainer().fit(module, _loader())


def test_infinite_weights_are_named_at_the_first_step() -> None:
    model = _mlp()
    with torch.no_grad():
        model.classifier.weight[0, 0] = math.inf
    module = ClassifierModule(model, num_classes=2, learning_rate=0.01)
    with pytest.raises(ValueError, match=r"loss is nan at epoch 0, batch 0 .*parameters \['model.classifier.weight'\]"):
        tiny_trainer().fit(module, _loader())


def test_a_nan_test_set_is_refused_instead_of_giving_an_accuracy() -> None:
    module = ClassifierModule(_mlp(), num_classes=2)
    with pytest.raises(ValueError, match=r"inputs of test epoch 0, batch 1: batch\[0\]"):
        tiny_trainer().test(module, _loader(rows=32, bad=(9, 0)))


class _NaNTeacher(MLP):
    """A teacher that returns NaN logits."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * math.nan


def _distillation() -> DistillationModule:
    teacher = _NaNTeacher(num_classes=10, in_features=64, hidden_sizes=[8])
    return DistillationModule(MLP(num_classes=10, in_features=64, hidden_sizes=[8]), teacher, num_classes=10)


def test_a_teacher_returning_nan_stops_distillation_naming_the_teacher() -> None:
    module = _distillation()
    student = _state(module.student)
    with pytest.raises(
        ValueError,
        match=r"the teacher \(_NaNTeacher\) returned non-finite logits .* training epoch 0, "
        r"batch 0 \(global step 0\)",
    ):
        tiny_trainer(limit_val_batches=0).fit(module, DigitsDataModule())
    for key, value in module.student.state_dict().items():
        torch.testing.assert_close(value, student[key])


def test_a_teacher_returning_nan_on_validation_batches_is_refused_before_training() -> None:
    module = _distillation()
    with pytest.raises(
        ValueError,
        match=r"the teacher \(_NaNTeacher\) returned non-finite logits .*validation "
        r"\(sanity check\) epoch 0, batch 0",
    ):
        tiny_trainer().fit(module, DigitsDataModule())
    # without Lightning's sanity check, the teacher's accuracy check before training finds it
    with pytest.raises(
        ValueError,
        match=r"_NaNTeacher\) returned non-finite logits .*the teacher's check before "
        r"distillation \(validation loader 0, batch 0\)",
    ):
        tiny_trainer(num_sanity_val_steps=0).fit(_distillation(), DigitsDataModule())
