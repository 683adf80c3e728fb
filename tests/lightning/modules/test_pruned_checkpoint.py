"""A structurally pruned checkpoint tests (and loads) in a fresh, unpruned module, without the pruning callback."""

from pathlib import Path

import pytest
import torch
from conftest import tiny_trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer

from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import MLP, StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.callbacks import StructuredPruning
from lightning_distill.lightning.data import DigitsDataModule, TextClassificationDataModule
from lightning_distill.lightning.modules import ClassifierModule, DistillationModule

ID2LABEL = dict(enumerate(INTENTS))


def _mlp_module(seed: int = 0, num_classes: int = 10, hidden: int = 32) -> ClassifierModule:
    torch.manual_seed(seed)
    model = MLP(num_classes=num_classes, in_features=64, hidden_sizes=[hidden, 16])
    return ClassifierModule(model, learning_rate=0.01)


def _fit_pruned(module, data, tmp_path: Path, **trainer_kwargs) -> str:
    checkpoint = ModelCheckpoint(dirpath=tmp_path, filename="pruned")
    pruning = StructuredPruning(0.5, verbose=False)
    trainer = tiny_trainer(enable_checkpointing=True, callbacks=[pruning, checkpoint], **trainer_kwargs)
    trainer.fit(module, data)
    return checkpoint.best_model_path


def test_pruned_mlp_checkpoint_tests_in_a_fresh_module_without_the_callback(tmp_path: Path) -> None:
    data = DigitsDataModule()
    pruned = _mlp_module()
    best = _fit_pruned(pruned, data, tmp_path, max_epochs=2)
    assert pruned.model.hidden[0].out_features == 16  # the checkpoint really is smaller than the architecture
    expected = tiny_trainer().test(pruned, data, verbose=False)[0]["test/acc"]

    fresh = _mlp_module(seed=3)
    result = tiny_trainer().test(fresh, data, ckpt_path=best, verbose=False)[0]["test/acc"]
    assert result == expected
    assert [layer.out_features for layer in fresh.model.hidden if isinstance(layer, torch.nn.Linear)] == [16, 8]
    assert torch.equal(fresh.model.classifier.weight, pruned.model.classifier.weight)


def test_pruned_bert_student_checkpoint_tests_in_a_fresh_distillation_module(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tokenizer")
    files = write_data(tmp_path / "data")
    teacher_dir = write_bert(tmp_path / "teacher", layers=2, labels=INTENTS)
    data = TextClassificationDataModule(
        data_files=files, tokenizer=str(tmp_path / "tokenizer"), label_column="intent", batch_size=8
    )

    def module() -> DistillationModule:
        teacher = TransformerClassifier(teacher_dir, id2label=ID2LABEL)
        student = StudentFromTeacher(teacher_dir, layers=[0], id2label=ID2LABEL)
        return DistillationModule(student, teacher, loss=KDLoss(temperature=2.0), num_classes=3)

    pruned = module()
    best = _fit_pruned(pruned, data, tmp_path / "ckpt", limit_train_batches=2, num_sanity_val_steps=0)
    attention = pruned.student.model.bert.encoder.layer[0].attention.self
    assert attention.num_attention_heads == 1
    expected = tiny_trainer().test(pruned, data, verbose=False)[0]["test/acc"]

    fresh = module()
    result = tiny_trainer().test(fresh, data, ckpt_path=best, verbose=False)[0]["test/acc"]
    assert result == expected
    assert fresh.student.model.bert.encoder.layer[0].attention.self.num_attention_heads == 1


@pytest.mark.parametrize(
    ("module_kwargs", "match"),
    [
        (
            {"num_classes": 5},
            r"model.classifier.weight has shape \[5, 16\] but the model's has \[10, 16\], and structured pruning "
            r"never removes outputs of model.classifier \(its outputs are the model's outputs\).*build the model",
        ),
        (
            {"hidden": 64},
            r"model.hidden.0.weight has shape \[64, 64\] but the model's has \[32, 64\], and the checkpoint's "
            r"model.hidden.0 has more outputs \(64\) than the model's \(32\)",
        ),
    ],
)
def test_a_checkpoint_of_another_architecture_names_the_layer_and_both_shapes(module_kwargs: dict, match: str) -> None:
    state = _mlp_module(**module_kwargs).state_dict()
    with pytest.raises(ValueError, match=match):
        _mlp_module().load_state_dict(state)
