"""Knowledge distillation: a frozen teacher trains a student through soft targets (and optionally its features)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn
from typing_extensions import override

from lightning_distill.core.batch import (
    batch_index,
    batch_labels,
    batch_size,
    logits_of,
    model_num_classes,
    student_inputs,
    teacher_inputs,
)
from lightning_distill.core.losses.features import AttentionLoss, HiddenStateLoss
from lightning_distill.core.losses.kd import KDLoss
from lightning_distill.core.losses.named_features import FeatureLoss
from lightning_distill.core.models.dropout import check_dropout, set_dropout
from lightning_distill.core.models.weights import load_teacher_weights
from lightning_distill.core.pruning.serialization import resize_to_state_dict
from lightning_distill.core.teacher_cache import cache as _teacher_cache
from lightning_distill.core.teacher_cache.logits import CacheDtype, StorageFormat, TeacherLogits
from lightning_distill.lightning.modules import _teacher_check
from lightning_distill.lightning.modules._feature_capture import capture_outputs, captured_output
from lightning_distill.lightning.modules._finite import check_finite
from lightning_distill.lightning.modules._hf_features import bind_hf_feature_losses, hf_feature_step
from lightning_distill.lightning.modules._metrics import TopOneMetrics, log_top1
from lightning_distill.lightning.modules._teacher_eval import TeacherEvalLogits
from lightning_distill.lightning.modules.classifier import build_optimizer, check_num_classes

TEACHER_KEY = "teacher."


class DistillationModule(pl.LightningModule):
    """Trains ``student`` on a mix of the teacher's soft targets and the labels.

    The teacher is frozen (no gradients, not in the optimizer), stays in eval mode for the whole fit (the module puts
    the student in train mode and the teacher in eval mode when fitting starts, and ``.train()`` on the module leaves
    the teacher in eval), and is left out of checkpoints: a checkpoint of this module holds the student alone (under
    ``student.``). A structurally pruned student's checkpoint loads into the freshly built student, whose Linears are
    shrunk to the checkpoint's sizes first. Before training starts the teacher's validation accuracy is logged as
    ``teacher/val_acc`` so a broken teacher is caught before hours of distillation: on the data module's validation
    set, or on the ``val_dataloaders`` given to ``trainer.fit``; without validation data the log says it was skipped.

    Args:
        student: The model being trained.
        teacher: The trained model whose outputs the student imitates.
        teacher_checkpoint: Optional file with the teacher's trained weights: a checkpoint of
            :class:`ClassifierModule` or :class:`DistillationModule`, or a plain ``state_dict``. Leave it out when the
            teacher arrives trained (e.g. a Hugging Face model loaded from a fine-tuned checkpoint). A checkpoint of
            any other LightningModule works too: the teacher's weights are found under the one top-level prefix
            holding exactly the teacher's keys (e.g. ``backbone.``).
        teacher_checkpoint_prefix: The prefix of the teacher's keys in ``teacher_checkpoint``; None finds it.
        loss: The soft/hard loss; defaults to ``KDLoss(temperature=4.0, soft_target_weight=0.7)``.
        num_classes: Classes in the data; linked from ``data.num_classes`` by the CLI and checked against both models.
        learning_rate: AdamW learning rate of the student.
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of training steps with linear warm-up, then linear decay; 0 keeps it constant.
        cache_teacher_logits: Run the teacher once over the training set (eval mode, inference mode, batched) when
            training starts, and look its logits up by each batch's ``index`` in every epoch, so an epoch costs about
            what plain fine-tuning of the student costs. Under DDP each of N processes runs the teacher on its own
            1/N of the examples (contiguous blocks of ``teacher_cache_batch_size``) and all processes then share the
            whole cache; one process and N processes give the same logits. The cache is keyed by a hash of the
            teacher's weights and config, the teacher's exact inputs and the data module's ``fingerprint()`` (data
            files, tokenizers), so a changed teacher, tokenizer or data never reuses stale logits. Refused where the
            training batches carry no ``index`` (each example's position in the training set) or are not
            deterministic (random augmentation), and with feature losses (they need the teacher's features at every
            step).
        teacher_cache_dir: Folder where each process writes its part of the cache (``teacher_logits_<key>_<format>/``,
            ``.npy`` files) and every process then memory-maps the whole of it, so memory does not grow with the
            training set; reused by later fits with the same key and format. With several nodes it must be on shared
            storage (checked before the teacher runs). None gathers the logits into every process's memory.
        teacher_cache_batch_size: Examples per teacher forward pass while the cache is built; part of the key, as
            dynamic padding makes the teacher's inputs depend on which examples share a batch.
        teacher_cache_dtype: Storage dtype of the cached logits. ``float16`` (the default) halves the bytes; its
            rounding (relative 2^-11) changes the KD loss by < 1e-5 on the tests' tiny BERT and < 1e-3 (relative
            < 3e-4) on 100-class logits of a trained classifier's size. Logits beyond 65504 are refused before
            training. See :class:`~lightning_distill.core.teacher_cache.logits.StorageFormat`.
        teacher_cache_top_k: Store only each example's ``k`` largest logits, their class ids and one fill value for
            the other classes, chosen so that at the loss's ``temperature`` the top-k probabilities are exact and the
            others share the leftover probability equally. The soft-target gradient of the top-k classes is
            unchanged; that of each other class moves by less than the leftover probability. Measured on 100 classes
            at T=2 (logits std 5): the KD loss changes by 10% at k=10, 3.6% at k=20, 0.3% at k=50; more at higher
            temperatures, which lift the tail. None (the default) stores every logit.
        hidden_state_loss: Optional hidden-state loss over a student -> teacher layer map (both models must return
            ``hidden_states``, as :class:`~lightning_distill.core.models.TransformerClassifier` does); its ``weight``
            scales it in the total loss.
        attention_loss: Optional TinyBERT attention-map loss (both models need ``attn_implementation: eager``).
        dropout: Dropout probability of the student while it trains: None keeps the student's own (a Hugging Face
            config's, e.g. 0.1); 0 turns it off; any other value replaces every dropout layer's probability (and the
            Hugging Face config's). The student is put in train mode when fitting starts whatever mode it arrived in
            (``from_pretrained`` returns eval mode), so dropout is this setting's choice. The teacher never drops out.
        feature_losses: Losses between outputs of named modules of any two models (see
            :class:`~lightning_distill.core.losses.FeatureLoss`): forward hooks capture them during the training step's
            one forward pass of each model (the teacher's without gradients) and are removed after it. Each is
            weighted by its ``weight`` and logged as ``train/feature_loss/<student_layer>_to_<teacher_layer>``; their
            projections are trained with the student and saved in checkpoints (under ``feature_losses.``). Layer
            names are checked, and projections created, here.
    """

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        teacher_checkpoint: str | None = None,
        teacher_checkpoint_prefix: str | None = None,
        loss: KDLoss | None = None,
        num_classes: int | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
        cache_teacher_logits: bool = False,
        teacher_cache_dir: str | None = None,
        teacher_cache_batch_size: int = 64,
        teacher_cache_dtype: CacheDtype = "float16",
        teacher_cache_top_k: int | None = None,
        hidden_state_loss: HiddenStateLoss | None = None,
        attention_loss: AttentionLoss | None = None,
        dropout: float | None = None,
        feature_losses: list[FeatureLoss] | None = None,
    ) -> None:
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        check_dropout(dropout)
        student_classes, teacher_classes = model_num_classes(student), model_num_classes(teacher)
        if student_classes is not None and teacher_classes is not None and student_classes != teacher_classes:
            raise ValueError(
                f"teacher has {teacher_classes} classes but the student has {student_classes}; both must predict the "
                "classes of the data module"
            )
        check_num_classes(teacher, num_classes, "teacher")
        check_num_classes(student, num_classes, "student")
        if cache_teacher_logits and (hidden_state_loss is not None or attention_loss is not None or feature_losses):
            raise ValueError(
                "cache_teacher_logits caches logits only, but hidden_state_loss/attention_loss/feature_losses need "
                "the teacher's features at every step; use one or the other"
            )
        if teacher_cache_batch_size < 1:
            raise ValueError(f"teacher_cache_batch_size must be >= 1, got {teacher_cache_batch_size}")
        loss = loss if loss is not None else KDLoss()
        cache_storage = StorageFormat(teacher_cache_dtype, teacher_cache_top_k, getattr(loss, "temperature", 1.0))
        if teacher_classes is not None:
            cache_storage.check_classes(teacher_classes)
        if hidden_state_loss is not None or attention_loss is not None:
            bind_hf_feature_losses(student, teacher, hidden_state_loss, attention_loss)
        for feature_loss in feature_losses or []:
            feature_loss.bind(student, teacher)
        self._teacher_checkpoint_missing = False
        if teacher_checkpoint is not None:
            if _teacher_check.launched_as_one_of_several_processes() and not Path(teacher_checkpoint).is_file():
                # Raising here would hang the other processes; setup() raises on every rank, naming those lacking it.
                self._teacher_checkpoint_missing = True
            else:
                load_teacher_weights(teacher, teacher_checkpoint, prefix=teacher_checkpoint_prefix)
        self.save_hyperparameters(
            ignore=["student", "teacher", "loss", "hidden_state_loss", "attention_loss", "feature_losses"]
        )
        if dropout is not None:
            set_dropout(student, dropout)
        self.student = student
        self.teacher = teacher.requires_grad_(False).eval()
        self.loss = loss
        self.hidden_state_loss = hidden_state_loss
        self.attention_loss = attention_loss
        self.feature_losses = nn.ModuleList(feature_losses or [])
        self.top1 = TopOneMetrics()
        self.num_classes = num_classes
        self.cache_teacher_logits = cache_teacher_logits
        self.teacher_cache_dir = teacher_cache_dir
        self.teacher_cache_batch_size = teacher_cache_batch_size
        self.teacher_cache_storage = cache_storage
        self.teacher_val_acc: float | None = None
        # Filled when training starts; deliberately not a buffer, so checkpoints stay student-only.
        self.cached_teacher_logits: TeacherLogits | None = None
        self.teacher_cache_key: str | None = None
        self.teacher_cache_seconds: float | None = None
        self.teacher_eval_logits = TeacherEvalLogits()

    # --- the teacher stays frozen, in eval mode, and out of checkpoints -------------------------------------------

    @override
    def train(self, mode: bool = True) -> DistillationModule:
        super().train(mode)
        self.teacher.eval()
        return self

    @override
    def on_fit_start(self) -> None:
        # Lightning keeps each submodule's mode at fit start: the student (and feature-loss projections) train,
        # whatever mode they came in; train() keeps the teacher in eval.
        self.train()
        _teacher_check.expect_eval_teacher(self)

    @override
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Dropped from the checkpoint, not from state_dict(): sharding strategies (FSDP) gather the state dict with
        # hooks that expect every parameter they manage, the teacher's included.
        state = checkpoint.get("state_dict", {})
        for key in [k for k in state if k.startswith(TEACHER_KEY)]:
            del state[key]

    @override
    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        # Checkpoints hold no teacher: keep the teacher we were built with and load the rest strictly.
        merged = dict(state_dict)
        for key, value in self.teacher.state_dict().items():
            merged.setdefault(TEACHER_KEY + key, value)
        # A structurally pruned student has smaller layers than the freshly built one: shrink them to fit first.
        resize_to_state_dict(self, merged)
        return super().load_state_dict(merged, strict=strict, assign=assign)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for n, p in self.named_parameters() if not n.startswith(TEACHER_KEY) and p.requires_grad)

    # --- steps ----------------------------------------------------------------------------------------------------

    def forward(self, inputs: Any) -> Tensor:
        return logits_of(self.student, inputs)

    def forward_for_pruning(self, inputs: Any) -> Any:
        """What structured pruning traces: the student's logits and, per :class:`FeatureLoss`, its projection of the
        student feature (or the feature itself without a projection), so a projection loses the input channels its
        student layer loses, and a feature compared unprojected keeps its width."""
        if not self.feature_losses:
            return self(inputs)
        names = [loss.student_layer for loss in self.feature_losses]
        with capture_outputs(self.student, names) as captured:
            logits = self(inputs)
        projected = [
            loss.project(captured_output(captured, loss.student_layer, "student")) for loss in self.feature_losses
        ]
        return (logits, *projected)

    def teacher_logits(self, batch: Any) -> Tensor:
        """The teacher's logits for ``batch``, computed without gradients."""
        with torch.no_grad():
            return logits_of(self.teacher, teacher_inputs(batch)).detach()

    def eval_teacher_logits(self, batch: Any) -> Tensor:
        """The teacher's logits for a validation or test batch: computed once per fit, then reused while the teacher
        is unchanged (:class:`~lightning_distill.lightning.modules._teacher_eval.TeacherEvalLogits`)."""
        return self.teacher_eval_logits(batch, self.teacher_logits)

    def _cached_logits(self, batch: Any) -> Tensor:
        if self.cached_teacher_logits is None:
            raise RuntimeError("cache_teacher_logits is on but the cache was not built; it is built at train start")
        index = batch_index(batch)
        if index is None:
            raise ValueError("cache_teacher_logits needs an 'index' in every training batch (see IndexedDataset)")
        return self.cached_teacher_logits[index].to(self.device)

    def _named_feature_terms(self, student_outputs: dict, teacher_outputs: dict) -> dict[str, Tensor]:
        """The weighted :class:`FeatureLoss` terms from the outputs the hooks captured."""
        terms = {}
        for loss in self.feature_losses:
            student = captured_output(student_outputs, loss.student_layer, "student")
            teacher = captured_output(teacher_outputs, loss.teacher_layer, "teacher")
            terms[f"feature_loss/{loss.name}"] = loss(student, teacher) * loss.weight
        return terms

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        labels = batch_labels(batch)
        terms: dict[str, Tensor] = {}
        with ExitStack() as hooks:
            # Hooks live for this forward pass only: validation, export and copies of the student never carry them.
            student_outputs = hooks.enter_context(
                capture_outputs(self.student, [loss.student_layer for loss in self.feature_losses])
            )
            teacher_outputs = hooks.enter_context(
                capture_outputs(self.teacher, [loss.teacher_layer for loss in self.feature_losses])
            )
            if self.hidden_state_loss is not None or self.attention_loss is not None:
                student_logits, teacher_logits, terms = hf_feature_step(self, batch)
            else:
                student_logits = self(student_inputs(batch))
                teacher_logits = self._cached_logits(batch) if self.cache_teacher_logits else self.teacher_logits(batch)
        terms.update(self._named_feature_terms(student_outputs, teacher_outputs))
        out = self.loss(student_logits, teacher_logits, labels)
        loss = out.loss + sum(terms.values()) if terms else out.loss
        check_finite(self, "train", batch, batch_idx, loss, teacher_logits)
        n = batch_size(batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=n)
        self.log("train/soft_loss", out.soft, batch_size=n)
        self.log("train/hard_loss", out.hard, batch_size=n)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=n)
        log_top1(self, "train/agreement", student_logits, teacher_logits.argmax(-1), n)
        return loss

    def _eval_step(self, batch: Any, batch_idx: int, stage: str) -> None:
        labels = batch_labels(batch)
        student_logits = self(student_inputs(batch))
        teacher_logits = self.eval_teacher_logits(batch)
        loss = F.cross_entropy(student_logits, labels)
        check_finite(self, stage, batch, batch_idx, loss, teacher_logits)
        n = batch_size(batch)
        # averaged over the epoch: over every process's batches, not only this one's (torchmetrics sync themselves)
        self.log(f"{stage}/loss", loss, batch_size=n, sync_dist=True)
        log_top1(self, f"{stage}/acc", student_logits, labels, n, prog_bar=True)
        # agreement: the share of examples where the student's top-1 class is the teacher's
        log_top1(self, f"{stage}/agreement", student_logits, teacher_logits.argmax(-1), n, prog_bar=True)

    def on_validation_epoch_start(self) -> None:
        self.teacher_eval_logits.check_teacher(self.teacher)

    def on_test_epoch_start(self) -> None:
        self.teacher_eval_logits.check_teacher(self.teacher)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(student_inputs(batch))  # logits: PredictionWriter turns them into label ids and probabilities

    def configure_optimizers(self) -> Any:
        return build_optimizer(
            self, self.hparams.learning_rate, self.hparams.weight_decay, self.hparams.warmup_fraction
        )

    # --- the teacher is measured once before training -------------------------------------------------------------

    def setup(self, stage: str) -> None:
        _teacher_check.check_checkpoint_on_every_rank(self._teacher_checkpoint_missing, self.hparams.teacher_checkpoint)
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if self.cache_teacher_logits and getattr(datamodule, "return_index", None) is False:
            datamodule.return_index = True  # before the loaders are built: the cache looks logits up by index
        # A tokenizer larger than a model's embedding table fails deep inside the model; say so before any step.
        student_vocab = getattr(datamodule, "vocab_size", None)
        if student_vocab is not None:
            from lightning_distill.core.models.text import check_tokenizer_fits

            check_tokenizer_fits(student_vocab, self.student, "student")
            teacher_vocab = getattr(datamodule, "teacher_vocab_size", None)
            check_tokenizer_fits(teacher_vocab or student_vocab, self.teacher, "teacher")

    def on_train_start(self) -> None:
        if self.cache_teacher_logits:
            self.build_teacher_cache()
        if self.trainer.sanity_checking:
            return
        loaders, why = _teacher_check.validation_loaders(self.trainer)
        self.teacher_eval_logits.check_teacher(self.teacher)
        if why is None:
            self.teacher_val_acc = _teacher_check.report_teacher_accuracy(self, loaders)
        else:
            rank_zero_info(f"teacher sanity check skipped (no teacher/val_acc): {why}")

    def build_teacher_cache(self) -> None:
        """Compute (or load from ``teacher_cache_dir``) the teacher's logits over the training set; see the class.

        The global RNG is left as it was (the passes over the data draw DataLoader seeds), so a fit trains on the same
        batches whether the cache was computed, loaded or kept.
        """
        cuda = [self.device.index or 0] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):
            self._build_teacher_cache()

    def _build_teacher_cache(self) -> None:
        start = time.perf_counter()
        datamodule = getattr(self.trainer, "datamodule", None)
        plan = _teacher_cache.plan_cache(
            self.teacher, datamodule, self.trainer.train_dataloader, self.teacher_cache_batch_size
        )
        storage = self.teacher_cache_storage
        kept = self.cached_teacher_logits
        if kept is None or self.teacher_cache_key != plan.key or kept.storage != storage:
            logits, loaded = _teacher_cache.load_or_compute(
                self.teacher, plan, storage, self.teacher_cache_dir, self.device
            )
            self.cached_teacher_logits = logits
            self.teacher_cache_key = plan.key
            ran = plan.shard.stop - plan.shard.start
            how = f"loaded from {self.teacher_cache_dir}" if loaded else f"computed (this process ran {ran} of them)"
        else:
            how = "kept from the previous fit"
        self.teacher_cache_seconds = time.perf_counter() - start
        where = "memory-mapped" if self.teacher_cache_dir else "in memory"
        megabytes = self.cached_teacher_logits.nbytes / 1e6
        rank_zero_info(
            f"teacher logits for {len(self.cached_teacher_logits)} training examples {how} in "
            f"{self.teacher_cache_seconds:.1f} s, stored as {storage.name} ({megabytes:.1f} MB {where}, key {plan.key})"
        )
