from pathlib import Path

import pytest
import torch
from tiny_text import INTENTS, write_bert, write_distilbert

from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier, check_tokenizer_fits

ID2LABEL = dict(enumerate(INTENTS))


def _inputs(vocab: int = 19, batch: int = 3, length: int = 6) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(5, vocab, (batch, length), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, -2:] = 0
    return {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": torch.zeros_like(input_ids)}


def test_bare_encoder_gets_a_head_named_after_the_data(tmp_path: Path) -> None:
    model = TransformerClassifier(write_bert(tmp_path), num_classes=3, id2label=ID2LABEL)
    assert model.num_classes == 3
    assert model.config.id2label == ID2LABEL and model.config.label2id["music"] == 2
    assert model(**_inputs()).logits.shape == (3, 3)


def test_id2label_from_yaml_with_string_keys_gives_num_classes(tmp_path: Path) -> None:
    model = TransformerClassifier(write_bert(tmp_path), id2label={"0": "a", "1": "b"})
    assert model.num_classes == 2 and model.config.id2label == {0: "a", 1: "b"}


def test_bare_encoder_needs_num_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no classification head, so num_classes is required"):
        TransformerClassifier(write_bert(tmp_path))


def test_fine_tuned_classifier_keeps_its_trained_head(tmp_path: Path) -> None:
    path = write_bert(tmp_path, labels=INTENTS)
    first = TransformerClassifier(path, num_classes=3, id2label=ID2LABEL)
    second = TransformerClassifier(path, num_classes=3, id2label=ID2LABEL)
    torch.testing.assert_close(first.model.classifier.weight, second.model.classifier.weight)


def test_teacher_checkpoint_with_a_different_label_count_is_refused(tmp_path: Path) -> None:
    path = write_bert(tmp_path, labels=INTENTS)
    with pytest.raises(ValueError, match="classifier of 3 labels but the data has 4 classes"):
        TransformerClassifier(path, num_classes=4)
    # reinitialize_head trains a new head instead, also where the sizes match
    assert TransformerClassifier(path, num_classes=4, reinitialize_head=True).num_classes == 4
    trained = TransformerClassifier(path, num_classes=3).model.classifier.weight
    fresh = TransformerClassifier(path, num_classes=3, reinitialize_head=True)
    assert not torch.equal(fresh.model.classifier.weight, trained)
    assert fresh.model.classifier.bias.abs().sum() == 0


def test_teacher_checkpoint_with_different_label_names_is_refused(tmp_path: Path) -> None:
    path = write_bert(tmp_path, labels=INTENTS)
    reordered = dict(enumerate(["travel", "music", "weather"]))
    with pytest.raises(ValueError, match=r"same names in a different order.*id 1: 'weather' in the checkpoint"):
        TransformerClassifier(path, id2label=reordered)
    renamed = dict(enumerate(["travel", "weather", "songs"]))
    with pytest.raises(ValueError, match=r"names the checkpoint lacks, e.g. \['songs'\]"):
        TransformerClassifier(path, id2label=renamed)


def test_unnamed_checkpoint_labels_take_the_data_names(tmp_path: Path) -> None:
    path = write_bert(tmp_path, labels=["LABEL_0", "LABEL_1", "LABEL_2"])
    assert TransformerClassifier(path, id2label=ID2LABEL).config.id2label == ID2LABEL


def test_student_keeps_the_chosen_teacher_layers_and_reloads(tmp_path: Path) -> None:
    teacher_path = write_bert(tmp_path / "teacher", layers=4, labels=INTENTS)
    teacher = TransformerClassifier(teacher_path, id2label=ID2LABEL)
    student = StudentFromTeacher(teacher_path, layers=[0, 2], id2label=ID2LABEL)
    assert student.config.num_hidden_layers == 2 and len(student.model.bert.encoder.layer) == 2
    torch.testing.assert_close(
        student.model.bert.encoder.layer[1].output.dense.weight, teacher.model.bert.encoder.layer[2].output.dense.weight
    )
    torch.testing.assert_close(student.model.classifier.weight, teacher.model.classifier.weight)

    student.save_pretrained(tmp_path / "student")
    reloaded = TransformerClassifier(str(tmp_path / "student"), num_classes=3, id2label=ID2LABEL)
    assert reloaded.config.num_hidden_layers == 2
    student.eval(), reloaded.eval()
    torch.testing.assert_close(reloaded(**_inputs()).logits, student(**_inputs()).logits)


def test_student_cut_from_the_fine_tuned_teacher_of_a_lightning_checkpoint(tmp_path: Path) -> None:
    # the pretrained encoder the YAML flow starts from, and a "fine-tuned" teacher of it saved as ClassifierModule does
    encoder = write_bert(tmp_path / "encoder", layers=4)
    fine_tuned = TransformerClassifier(write_bert(tmp_path / "tuned", layers=4, seed=7), num_classes=3)
    torch.save({"state_dict": {f"model.{k}": v for k, v in fine_tuned.state_dict().items()}}, tmp_path / "best.ckpt")

    student = StudentFromTeacher(encoder, layers=[0, 3], num_classes=3, teacher_weights=str(tmp_path / "best.ckpt"))
    pretrained = StudentFromTeacher(encoder, layers=[0, 3], num_classes=3)
    for ours, theirs in [(0, 0), (1, 3)]:
        torch.testing.assert_close(
            student.model.bert.encoder.layer[ours].intermediate.dense.weight,
            fine_tuned.model.bert.encoder.layer[theirs].intermediate.dense.weight,
        )
    torch.testing.assert_close(student.model.classifier.weight, fine_tuned.model.classifier.weight)
    assert not torch.equal(
        pretrained.model.bert.encoder.layer[0].intermediate.dense.weight,
        student.model.bert.encoder.layer[0].intermediate.dense.weight,
    )

    with pytest.raises(FileNotFoundError, match=r"teacher_weights '.*missing.ckpt' does not exist"):
        StudentFromTeacher(encoder, layers=[0], num_classes=3, teacher_weights=str(tmp_path / "missing.ckpt"))


def test_distilbert_student_ignores_token_type_ids(tmp_path: Path) -> None:
    path = write_distilbert(tmp_path, layers=3)
    student = StudentFromTeacher(path, layers=[0, 2], num_classes=3).eval()
    assert student.config.num_hidden_layers == 2 and student.model.distilbert.transformer.n_layers == 2
    with_types = student(**_inputs()).logits
    inputs = _inputs()
    del inputs["token_type_ids"]
    torch.testing.assert_close(student(**inputs).logits, with_types)


@pytest.mark.parametrize(
    ("layers", "match"),
    [([0, 4], r"name layers \[4\] that do not exist: the model has 4 \(0..3\)"), ([2, 0], "increasing"), ([], "one")],
)
def test_student_layers_must_exist(tmp_path: Path, layers: list[int], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        StudentFromTeacher(write_bert(tmp_path, layers=4), layers=layers, num_classes=3)


def test_tokenizer_larger_than_the_embedding_is_refused(tmp_path: Path) -> None:
    model = TransformerClassifier(write_bert(tmp_path, vocab_size=19), num_classes=3)
    check_tokenizer_fits(19, model)
    with pytest.raises(ValueError, match="the tokenizer has 40 tokens but the student's embedding table has 19 rows"):
        check_tokenizer_fits(40, model, "student")
