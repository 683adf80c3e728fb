"""Dropout during fine-tuning is the modules' explicit choice, not the mode ``from_pretrained`` left the model in."""

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from tiny_text import INTENTS, text_data, write_text_task
from torch import nn

from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.core.models.dropout import dropout_probabilities, set_dropout
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule

ID2LABEL = dict(enumerate(INTENTS))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_task(tmp_path_factory.mktemp("dropout"), teacher_layers=2)


class _Modes(pl.Callback):
    """Records, at every training batch, the mode and probability of each dropout layer of the named model(s)."""

    def __init__(self, *attributes: str) -> None:
        self.attributes = attributes
        self.seen: dict[str, list[tuple[bool, float]]] = {a: [] for a in attributes}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        for attribute in self.attributes:
            for module in getattr(pl_module, attribute).modules():
                if isinstance(module, nn.Dropout):
                    self.seen[attribute].append((module.training, module.p))


def _fit(module: pl.LightningModule, data, callback: pl.Callback) -> None:
    trainer = tiny_trainer(limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=1, callbacks=[callback])
    trainer.fit(module, data)


def test_a_pretrained_model_arrives_in_eval_mode(folder: Path) -> None:
    # The premise of the issue: without the modules' own choice, Lightning would train with dropout off.
    model = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    assert not any(m.training for m in model.modules() if isinstance(m, nn.Dropout))


def test_classifier_trains_with_the_models_dropout_by_default(folder: Path) -> None:
    module = ClassifierModule(TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL), num_classes=3)
    modes = _Modes("model")
    _fit(module, text_data(folder), modes)
    assert modes.seen["model"] and all(training and p == pytest.approx(0.1) for training, p in modes.seen["model"])


def test_classifier_dropout_zero_turns_it_off_and_is_saved_in_the_config(folder: Path) -> None:
    model = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    module = ClassifierModule(model, num_classes=3, dropout=0.0)
    modes = _Modes("model")
    _fit(module, text_data(folder), modes)
    assert all(training and p == 0.0 for training, p in modes.seen["model"])
    assert model.config.hidden_dropout_prob == 0.0 and model.config.attention_probs_dropout_prob == 0.0


def test_distillation_trains_the_student_with_dropout_and_keeps_the_teacher_in_eval(folder: Path) -> None:
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0], id2label=ID2LABEL)
    module = DistillationModule(student, teacher, loss=KDLoss(temperature=2.0), num_classes=3, dropout=0.3)
    modes = _Modes("student", "teacher")
    _fit(module, text_data(folder), modes)
    assert modes.seen["student"] and all(training and p == 0.3 for training, p in modes.seen["student"])
    assert modes.seen["teacher"] and not any(training for training, _ in modes.seen["teacher"])


def test_dropout_changes_training_outputs_only_when_on(folder: Path) -> None:
    model = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL).train()
    inputs = {"input_ids": torch.randint(5, 19, (4, 6))}
    torch.manual_seed(0)
    first, second = model(**inputs).logits, model(**inputs).logits
    assert not torch.allclose(first, second)
    assert set_dropout(model, 0.0) == len(dropout_probabilities(model)) > 0
    assert torch.equal(model(**inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("value", [-0.1, 1.0])
def test_bad_dropout_is_refused(folder: Path, value: float) -> None:
    model = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    with pytest.raises(ValueError, match=r"dropout must be None .* in \[0, 1\)"):
        ClassifierModule(model, num_classes=3, dropout=value)
