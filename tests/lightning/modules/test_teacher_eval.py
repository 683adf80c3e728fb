from pathlib import Path

import pytest
import torch
from conftest import tiny_trainer
from tiny_text import INTENTS, text_data, write_text_task

from lightning_distill.core.batch import student_inputs
from lightning_distill.core.losses import KDLoss
from lightning_distill.core.models import StudentFromTeacher, TransformerClassifier
from lightning_distill.lightning.modules import DistillationModule
from lightning_distill.lightning.modules._teacher_eval import TeacherEvalLogits


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_text_task(tmp_path_factory.mktemp("text"))


def _module(folder: Path) -> DistillationModule:
    id2label = dict(enumerate(INTENTS))
    teacher = TransformerClassifier(str(folder / "teacher"), id2label=id2label)
    student = StudentFromTeacher(str(folder / "teacher"), layers=[0, 2], id2label=id2label)
    return DistillationModule(student, teacher, loss=KDLoss(temperature=2.0), num_classes=3, cache_teacher_logits=True)


def test_the_teacher_runs_once_on_the_validation_set_per_fit(folder: Path) -> None:
    data, module = text_data(folder), _module(folder)
    calls = {"validation": 0, "other": 0}

    def count(*_) -> None:
        calls["validation" if module.trainer.validating else "other"] += 1

    module.teacher.register_forward_hook(count)
    trainer = tiny_trainer(max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(module, data)
    val_batches = len(data.val_dataloader())
    # the sanity check before training ran the teacher on every validation batch; three validation passes reused it
    assert calls["validation"] == 0
    assert module.teacher_eval_logits.hits == 3 * val_batches
    live = []
    module.eval()
    for batch in data.val_dataloader():
        live.append(module.teacher_logits(batch))
        torch.testing.assert_close(module.eval_teacher_logits(batch), live[-1], rtol=0, atol=0)
    agreement = trainer.callback_metrics["val/agreement"]
    student = torch.cat([module(student_inputs(b)).argmax(-1) for b in data.val_dataloader()])
    assert agreement.item() == pytest.approx((student == torch.cat(live).argmax(-1)).float().mean().item())


def test_a_changed_teacher_is_never_answered_from_an_old_pass(folder: Path) -> None:
    module = _module(folder).eval()
    memo, batch = module.teacher_eval_logits, next(iter(text_data(folder).val_dataloader()))
    memo.check_teacher(module.teacher)
    before = module.eval_teacher_logits(batch)
    torch.testing.assert_close(module.eval_teacher_logits(batch), before)
    assert memo.hits == 1
    state = {k: v + 0.5 if v.is_floating_point() else v for k, v in module.teacher.state_dict().items()}
    module.teacher.load_state_dict(state)
    memo.check_teacher(module.teacher)  # what every validation and test pass starts with
    after = module.eval_teacher_logits(batch)
    assert memo.hits == 0 and not torch.allclose(after, before)
    torch.testing.assert_close(after, module.teacher_logits(batch))


def test_tuple_batches_and_a_full_memo_run_the_teacher() -> None:
    runs = []

    def compute(batch):
        runs.append(1)
        return torch.ones(2, 3)

    memo = TeacherEvalLogits(max_bytes=0)
    batch = {"input_ids": torch.ones(2, 4, dtype=torch.long), "index": torch.arange(2)}
    memo(batch, compute), memo(batch, compute), memo((torch.ones(2, 4), torch.zeros(2)), compute)
    assert len(runs) == 3 and memo.hits == 0
    roomy = TeacherEvalLogits()
    roomy(batch, compute), roomy(batch, compute)
    other = {"input_ids": torch.ones(2, 4, dtype=torch.long), "index": torch.arange(2, 4)}
    roomy(other, compute)
    assert len(runs) == 5 and roomy.hits == 1


def test_the_frozen_teacher_in_eval_mode_is_not_warned_about(
    folder: Path, lightning_log: pytest.LogCaptureFixture
) -> None:
    import warnings

    data, module = text_data(folder), _module(folder)
    teacher_modules = len(list(module.teacher.modules()))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, num_sanity_val_steps=0).fit(module, data)
    assert not [w for w in caught if "module(s) in eval mode" in str(w.message)]
    assert f"the frozen teacher's {teacher_modules} module(s) stay in eval mode" in lightning_log.text
