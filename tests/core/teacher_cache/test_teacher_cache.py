"""The teacher-logit cache's storage (float32, float16, top-k), its lookup by index and its split over processes."""

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_trainer
from tiny_text import INTENTS, text_data, write_text_task

from lightning_distill.core.batch import student_inputs
from lightning_distill.core.losses import KDLoss
from lightning_distill.core.losses.kd import kd_loss
from lightning_distill.core.models import MLP, StudentFromTeacher, TransformerClassifier
from lightning_distill.core.teacher_cache.cache import Shard
from lightning_distill.core.teacher_cache.logits import Part, StorageFormat, TeacherLogits
from lightning_distill.lightning.modules import DistillationModule

ID2LABEL = dict(enumerate(INTENTS))


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_task(tmp_path_factory.mktemp("text"))


def _module(folder: Path, **kwargs) -> DistillationModule:
    torch.manual_seed(0)
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=ID2LABEL)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0, 2], id2label=ID2LABEL)
    return DistillationModule(
        student, teacher, loss=KDLoss(temperature=2.0), num_classes=3, cache_teacher_logits=True, **kwargs
    )


def _fit(module: DistillationModule, folder: Path) -> DistillationModule:
    tiny_trainer(limit_train_batches=1, limit_val_batches=0, num_sanity_val_steps=0).fit(module, text_data(folder))
    return module


def _large_logits(classes: int = 100, examples: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher logits of a tiny MLP scaled to a trained classifier's size (std 5, max about 22), and a student's."""
    torch.manual_seed(0)
    x = torch.randn(examples, 32)
    with torch.no_grad():
        teacher = MLP(classes, 32, [64])(x)
        student = MLP(classes, 32, [16])(x)
    return teacher * 5 / teacher.std(), student


def test_float16_cache_changes_the_kd_loss_by_less_than_1e_3(folder: Path) -> None:
    full = _fit(_module(folder, teacher_cache_dtype="float32"), folder)
    half = _fit(_module(folder, teacher_cache_dtype="float16"), folder)
    assert half.cached_teacher_logits.nbytes * 2 == full.cached_teacher_logits.nbytes == 48 * 3 * 4
    half.eval()
    data = text_data(folder)
    data.setup("fit")
    batch = data.collator()([data.dataset("train")[i] for i in range(48)])
    with torch.no_grad():
        student = half(student_inputs(batch))
    losses = [kd_loss(student, m.cached_teacher_logits.dense(), 2.0) for m in (full, half)]
    assert losses[0] > 0 and abs(float(losses[0] - losses[1])) < 1e-5  # the tiny BERT's logits are small

    # logits of a trained classifier's size over 100 classes, for an untrained student and one near the teacher
    teacher, student = _large_logits()
    storage = StorageFormat("float16")
    rebuilt = storage.decode(storage.encode(teacher), 100)
    assert not torch.equal(rebuilt, teacher)
    for student_logits in (student, teacher + torch.randn_like(teacher)):
        for temperature in (1.0, 2.0, 4.0):
            full = float(kd_loss(student_logits, teacher, temperature))
            assert abs(float(kd_loss(student_logits, rebuilt, temperature)) - full) < 1e-3


@pytest.mark.parametrize(("k", "most"), [(10, 0.11), (20, 0.04), (50, 0.004)])
def test_top_k_keeps_the_top_probabilities_and_the_leftover_mass(k: int, most: float) -> None:
    teacher, student = _large_logits()
    storage = StorageFormat("float32", top_k=k, temperature=2.0)
    stored = storage.encode(teacher)
    assert {name: a.shape for name, a in stored.items()} == {"values": (256, k), "classes": (256, k), "fill": (256,)}
    assert storage.bytes_per_example(100) == k * 6 + 4 < 400
    rebuilt = storage.decode(stored, 100)
    p, q = (torch.softmax(logits / 2.0, dim=-1) for logits in (teacher, rebuilt))
    top = teacher.topk(k, dim=-1).indices
    # at the KD temperature the top-k classes keep their probabilities, the others share the leftover equally
    torch.testing.assert_close(q.gather(1, top), p.gather(1, top), atol=1e-6, rtol=1e-5)
    rest = torch.ones_like(p, dtype=torch.bool).scatter_(1, top, False)
    torch.testing.assert_close((q * rest).sum(-1), (p * rest).sum(-1), atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(q[rest].reshape(256, -1).std(-1), torch.zeros(256), atol=1e-7, rtol=0)
    # measured effect on the KD loss (100 classes, T=2, untrained student): 10% at k=10, 3.6% at k=20, 0.3% at k=50
    full = float(kd_loss(student, teacher, 2.0))
    change = abs(float(kd_loss(student, rebuilt, 2.0)) - full) / full
    print(f"top-{k} of 100 classes changes the KD loss by {change:.2%}")
    assert 0 < change < most


def test_top_k_cache_in_a_fit_looks_up_the_teacher_top_classes(folder: Path) -> None:
    full = _fit(_module(folder, teacher_cache_dtype="float32"), folder).cached_teacher_logits.dense()
    top = _fit(_module(folder, teacher_cache_dtype="float32", teacher_cache_top_k=2), folder)
    assert top.cached_teacher_logits.nbytes == 48 * (2 * (4 + 2) + 4)
    rebuilt = top.cached_teacher_logits.dense()
    assert torch.equal(rebuilt.argmax(-1), full.argmax(-1))
    # at the loss's temperature (2) the rebuilt distribution is the teacher's: only one class is left over
    torch.testing.assert_close(torch.softmax(rebuilt / 2, -1), torch.softmax(full / 2, -1), atol=1e-6, rtol=1e-5)


def test_storage_settings_are_checked_when_the_module_is_built() -> None:
    with pytest.raises(ValueError, match="teacher_cache_dtype must be 'float32' or 'float16', got 'bfloat16'"):
        DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), teacher_cache_dtype="bfloat16")
    with pytest.raises(ValueError, match="teacher_cache_top_k=3 keeps every one of the teacher's 3 classes"):
        DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), teacher_cache_top_k=3)
    with pytest.raises(ValueError, match="teacher_cache_top_k must be >= 1"):
        DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), teacher_cache_top_k=0)
    with pytest.raises(ValueError, match="teacher_cache_batch_size must be >= 1, got 0"):
        DistillationModule(MLP(3, 4, [8]), MLP(3, 4, [8]), teacher_cache_batch_size=0)


def test_logits_beyond_float16_are_refused_before_training(folder: Path) -> None:
    module = _module(folder, teacher_cache_dtype="float16")
    with torch.no_grad():
        module.teacher.model.classifier.bias.add_(1e5)
    before = {k: v.clone() for k, v in module.student.state_dict().items()}
    with pytest.raises(ValueError, match=r"beyond float16's range .*; set teacher_cache_dtype: float32"):
        _fit(module, folder)
    assert all(torch.equal(v, module.student.state_dict()[k]) for k, v in before.items())


def test_a_second_fit_reads_the_cache_from_the_folder_without_running_the_teacher(folder: Path, tmp_path: Path) -> None:
    first = _fit(_module(folder, teacher_cache_dir=str(tmp_path)), folder)
    again = _module(folder, teacher_cache_dir=str(tmp_path))
    calls = []
    again.teacher.register_forward_hook(lambda *args: calls.append(1))
    _fit(again, folder)
    assert not calls and again.teacher_cache_key == first.teacher_cache_key
    assert isinstance(again.cached_teacher_logits.parts[0].arrays["logits"], np.memmap)
    assert torch.equal(again.cached_teacher_logits.dense(), first.cached_teacher_logits.dense())
    # Building the cache (twice through the data) and loading it leave the RNG alike: same batches, same student.
    for (name, a), b in zip(first.student.state_dict().items(), again.student.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_rows_are_looked_up_by_index_across_parts() -> None:
    logits = torch.randn(10, 4)
    storage = StorageFormat("float32")
    parts = [Part(5, storage.encode(logits[5:])), Part(0, storage.encode(logits[:5]))]
    cache = TeacherLogits(parts, storage, 4)
    index = torch.tensor([7, 1, 9, 0, 5, 4])
    assert cache.shape == (10, 4) and torch.equal(cache[index], logits[index])
    with pytest.raises(IndexError, match="outside the 10 cached examples"):
        cache[torch.tensor([10])]
    with pytest.raises(ValueError, match="a part starts at example 6, expected 5"):
        TeacherLogits([Part(0, storage.encode(logits[:5])), Part(6, storage.encode(logits[6:]))], storage, 4)


@pytest.mark.parametrize(("examples", "batch", "world"), [(48, 8, 2), (50, 8, 3), (5, 8, 2), (100, 7, 4)])
def test_shards_cover_the_examples_once_in_blocks_of_the_batch_size(examples: int, batch: int, world: int) -> None:
    shards = [Shard(examples, batch, rank, world) for rank in range(world)]
    positions = [i for shard in shards for block in shard.batches() for i in block]
    assert positions == list(range(examples))
    blocks = [len(shard.batches()) for shard in shards]
    assert max(blocks) - min(blocks) <= 1 and all(shard.most_blocks == max(blocks) for shard in shards)
    assert all(len(block) == batch for shard in shards for block in shard.batches()[:-1])
