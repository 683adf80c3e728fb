from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from conftest import tiny_trainer
from tiny_text import INTENTS, text_data, write_bert, write_distilbert, write_text_task, write_tokenizer
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.batch import student_inputs
from lightning_distill.core.losses import AttentionLoss, HiddenStateLoss, KDLoss
from lightning_distill.core.models import MLP, StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.data import TextClassificationDataModule
from lightning_distill.lightning.modules import DistillationModule

ID2LABEL = dict(enumerate(INTENTS))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_task(tmp_path_factory.mktemp("text"))


def _module(folder: Path, **kwargs) -> DistillationModule:
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0, 2], id2label=ID2LABEL)
    return DistillationModule(student, teacher, loss=KDLoss(temperature=2.0), num_classes=3, **kwargs)


def _fit(module: pl.LightningModule, data: pl.LightningDataModule, **kwargs) -> pl.Trainer:
    trainer = tiny_trainer(limit_train_batches=2, limit_val_batches=1, num_sanity_val_steps=0, **kwargs)
    trainer.fit(module, data)
    return trainer


def test_cached_and_uncached_teacher_logits_give_the_same_loss(folder: Path) -> None:
    data = text_data(folder)
    module = _module(folder, cache_teacher_logits=True)
    _fit(module, data)
    assert module.cached_teacher_logits is not None and module.cached_teacher_logits.shape == (48, 3)

    module.eval()  # no student dropout, so the two losses see the same student logits
    batch = next(iter(data.train_dataloader()))
    labels = batch["labels"]
    student_logits = module(student_inputs(batch))
    cached = module.loss(student_logits, module._cached_logits(batch), labels)
    live = module.loss(student_logits, module.teacher_logits(batch), labels)
    assert cached.soft.item() > 0
    torch.testing.assert_close(cached.loss, live.loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(module._cached_logits(batch), module.teacher_logits(batch), atol=1e-5, rtol=1e-5)


def _entries(cache_dir: str) -> list[Path]:
    """The cache entries (folders) of ``cache_dir``; each has a ``.lock`` file beside it."""
    return [path for path in Path(cache_dir).iterdir() if path.is_dir()]


def test_cache_is_keyed_by_teacher_and_tokenization(folder: Path, tmp_path: Path) -> None:
    cache_dir = str(tmp_path / "cache")
    first = _module(folder, cache_teacher_logits=True, teacher_cache_dir=cache_dir)
    _fit(first, text_data(folder))
    again = _module(folder, cache_teacher_logits=True, teacher_cache_dir=cache_dir)
    _fit(again, text_data(folder))
    assert again.teacher_cache_key == first.teacher_cache_key and len(_entries(cache_dir)) == 1

    changed_teacher = _module(folder, cache_teacher_logits=True, teacher_cache_dir=cache_dir)
    with torch.no_grad():
        changed_teacher.teacher.model.classifier.bias.add_(1.0)
    _fit(changed_teacher, text_data(folder))
    truncated = _module(folder, cache_teacher_logits=True, teacher_cache_dir=cache_dir)
    _fit(truncated, text_data(folder, max_length=3))
    keys = {first.teacher_cache_key, changed_teacher.teacher_cache_key, truncated.teacher_cache_key}
    assert len(keys) == 3 and len(_entries(cache_dir)) == 3
    # the changed teacher's cache holds its own logits, not the stale ones
    torch.testing.assert_close(
        changed_teacher.cached_teacher_logits.dense() - first.cached_teacher_logits.dense(),
        torch.ones(48, 3),
        atol=2e-3,
        rtol=0,
    )


class _TupleData(pl.LightningDataModule):
    """Batches without an ``index``: ``(features, labels)`` tuples."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,))), batch_size=8)


class _AugmentedData(TextClassificationDataModule):
    """Replaces a random token in every example, a new one each time it is read."""

    def dataset(self, split: str):
        dataset = super().dataset(split)

        class Augmented(type(dataset)):
            def __getitem__(self, index: int) -> dict:
                item = super().__getitem__(index)
                ids = list(item["input_ids"])
                ids[int(torch.randint(1, len(ids), ()))] = int(torch.randint(5, 19, ()))
                return {**item, "input_ids": ids}

        augmented = Augmented(dataset.columns, dataset.labels)
        return augmented


def test_cache_refuses_batches_without_index() -> None:
    module = DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), num_classes=3, cache_teacher_logits=True)
    with pytest.raises(ValueError, match="by each example's 'index', but the training batches have none"):
        tiny_trainer(limit_train_batches=1).fit(module, _TupleData())


class _TripleData(pl.LightningDataModule):
    """``(features, labels, third)`` batches whose third item is not the examples' positions."""

    def __init__(self, third: torch.Tensor) -> None:
        super().__init__()
        self.third = third

    def train_dataloader(self) -> DataLoader:
        return DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 3, (16,)), self.third), batch_size=8)


@pytest.mark.parametrize(
    ("third", "match"),
    [
        (
            torch.rand(16),
            r"'index' \(the third item of each 3-item training batch, taken as the index\) is a "
            r"torch.float32 tensor of shape \(\d+,\); a 3-item batch's third item must be the index",
        ),
        (
            torch.arange(16).flip(0),
            r"'index' \(the third item of each 3-item training batch, taken as the index\) to "
            r"be its position .* a 3-item batch's third item must be the index",
        ),
    ],
    ids=["float-weights", "integer-not-positions"],
)
def test_cache_says_a_3_item_batch_third_item_is_taken_as_the_index(third: torch.Tensor, match: str) -> None:
    module = DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), num_classes=3, cache_teacher_logits=True)
    with pytest.raises(ValueError, match=match):
        tiny_trainer(limit_train_batches=1).fit(module, _TripleData(third))


def test_cache_refuses_random_augmentation(folder: Path) -> None:
    files = {split: str(folder / "data" / f"{split}.parquet") for split in ("train", "validation", "test")}
    data = _AugmentedData(str(folder / "tokenizer"), data_files=files, label_column="intent", batch_size=8)
    with pytest.raises(ValueError, match="encoding the first training examples twice gave different batches"):
        _fit(_module(folder, cache_teacher_logits=True), data)
    data.deterministic = False
    with pytest.raises(ValueError, match="says its inputs are not deterministic"):
        _fit(_module(folder, cache_teacher_logits=True), data)


def test_cache_and_feature_losses_are_exclusive(folder: Path) -> None:
    with pytest.raises(ValueError, match="cache_teacher_logits caches logits only"):
        _module(folder, cache_teacher_logits=True, hidden_state_loss=HiddenStateLoss({1: 2}))


def test_feature_losses_train_the_student_and_the_projection(folder: Path, tmp_path: Path) -> None:
    narrow = StudentFromTeacher(write_bert(tmp_path / "narrow", layers=2, hidden=8), layers=[0, 1], id2label=ID2LABEL)
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL, attn_implementation="eager")
    narrow.model.set_attn_implementation("eager")
    hidden = HiddenStateLoss({0: 0, 1: 2, 2: 4}, kind="mse", weight=2.0)
    module = DistillationModule(
        narrow, teacher, num_classes=3, hidden_state_loss=hidden, attention_loss=AttentionLoss({2: 4})
    )
    assert module.hidden_state_loss.projections["1"].weight.shape == (16, 8)
    before = module.hidden_state_loss.projections["1"].weight.detach().clone()
    trainer = _fit(module, text_data(folder))
    metrics = trainer.callback_metrics
    assert metrics["train/hidden_loss"] > 0 and metrics["train/attention_loss"] > 0
    total = metrics["train/soft_loss"] * 0.7 + metrics["train/hard_loss"] * 0.3
    total = total + metrics["train/hidden_loss"] + metrics["train/attention_loss"]
    torch.testing.assert_close(metrics["train/loss"], total, atol=1e-5, rtol=1e-5)
    assert not torch.equal(before, module.hidden_state_loss.projections["1"].weight)


def test_layer_map_naming_a_missing_layer_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match=r"names student layer\(s\) \[5\], but the student has 2 layers"):
        _module(folder, hidden_state_loss=HiddenStateLoss({5: 4}))
    with pytest.raises(ValueError, match=r"names teacher layer\(s\) \[6\], but the teacher has 4 layers"):
        _module(folder, attention_loss=AttentionLoss({1: 6}))


def test_attention_loss_needs_eager_attention(folder: Path) -> None:
    with pytest.raises(ValueError, match="set attn_implementation: eager on the student"):
        _module(folder, attention_loss=AttentionLoss({1: 2}))


def test_feature_losses_need_models_that_return_hidden_states() -> None:
    with pytest.raises(ValueError, match="takes no output_hidden_states; use a TransformerClassifier"):
        DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), hidden_state_loss=HiddenStateLoss({1: 1}))


def test_tokenizer_larger_than_the_student_embedding_is_refused(folder: Path, tmp_path: Path) -> None:
    big = write_tokenizer(tmp_path / "big", extra_words=10)
    with pytest.raises(ValueError, match="the tokenizer has 29 tokens but the student's embedding table has 19 rows"):
        _fit(_module(folder), text_data(folder, tokenizer=big))


def test_teacher_with_other_labels_is_refused(folder: Path) -> None:
    with pytest.raises(ValueError, match="classifier of 3 labels but the data has 5 classes"):
        TransformerClassifier(str(folder / "teacher"), num_classes=5)


def test_bert_teacher_teaches_a_distilbert_student_with_another_tokenizer(folder: Path, tmp_path: Path) -> None:
    # The teacher's tokenizer has 4 extra tokens, so each model gets its own encoding of the same text.
    teacher_tokenizer = write_tokenizer(tmp_path / "teacher_tokenizer", extra_words=4)
    teacher = TransformerClassifier(write_bert(tmp_path / "teacher", vocab_size=23, labels=INTENTS), id2label=ID2LABEL)
    student = TransformerClassifier(write_distilbert(tmp_path / "student"), id2label=ID2LABEL)
    data = text_data(folder, teacher_tokenizer=teacher_tokenizer)
    assert data.teacher_encodes_separately
    module = DistillationModule(student, teacher, num_classes=3, cache_teacher_logits=True)
    _fit(module, data)
    batch = next(iter(data.train_dataloader()))
    module.eval()
    torch.testing.assert_close(module._cached_logits(batch), module.teacher_logits(batch), atol=1e-5, rtol=1e-5)


def test_cli_links_labels_from_the_data_into_teacher_and_student(folder: Path, tmp_path: Path) -> None:
    from lightning_distill.lightning.cli import DistillCLI

    data_files = {split: str(folder / "data" / f"{split}.parquet") for split in ("train", "validation", "test")}
    config = {
        "model": {
            "class_path": "lightning_distill.lightning.modules.DistillationModule",
            "init_args": {
                "teacher": {
                    "class_path": "lightning_distill.core.models.TransformerClassifier",
                    "init_args": {"checkpoint": str(folder / "teacher")},
                },
                "student": {
                    "class_path": "lightning_distill.core.models.StudentFromTeacher",
                    "init_args": {"checkpoint": str(write_bert(tmp_path / "encoder", layers=2)), "layers": [1]},
                },
                "cache_teacher_logits": True,
            },
        },
        "data": {
            "class_path": "lightning_distill.lightning.data.TextClassificationDataModule",
            "init_args": {"tokenizer": str(folder / "tokenizer"), "data_files": data_files, "label_column": "intent"},
        },
        "trainer": {"logger": False, "enable_checkpointing": False},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = DistillCLI(args=["--config", str(path)], run=False)
    assert cli.model.student.config.id2label == ID2LABEL and cli.model.student.num_classes == 3
    assert cli.model.teacher.config.id2label == ID2LABEL and cli.model.num_classes == 3


def test_plain_fine_tuning_also_refuses_a_tokenizer_larger_than_the_embedding(folder: Path, tmp_path: Path) -> None:
    from lightning_distill.lightning.modules import ClassifierModule

    big = write_tokenizer(tmp_path / "big", extra_words=10)
    module = ClassifierModule(TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL), num_classes=3)
    with pytest.raises(ValueError, match="the tokenizer has 29 tokens but the model's embedding table has 19 rows"):
        _fit(module, text_data(folder, tokenizer=big))
