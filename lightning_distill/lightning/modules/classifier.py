"""Supervised training of one classifier: teachers, and students trained from scratch for comparison."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from typing_extensions import override

from lightning_distill.core.batch import batch_labels, batch_size, logits_of, model_num_classes, student_inputs
from lightning_distill.core.models.dropout import check_dropout, set_dropout
from lightning_distill.core.pruning.serialization import resize_to_state_dict
from lightning_distill.lightning.modules._finite import check_finite
from lightning_distill.lightning.modules._metrics import TopOneMetrics, log_top1


def check_num_classes(model: nn.Module, num_classes: int | None, what: str = "model") -> None:
    """Raise if ``model`` says it predicts a different number of classes than ``num_classes`` (from the data)."""
    predicted = model_num_classes(model)
    if num_classes is not None and predicted is not None and predicted != num_classes:
        raise ValueError(
            f"{what} has {predicted} classes but the data module has {num_classes}; set the {what}'s num_classes "
            f"to {num_classes} (or leave it out so the CLI links it from the data)"
        )


class ClassifierModule(pl.LightningModule):
    """Fits ``model`` with cross-entropy on the labels and logs loss and accuracy.

    Args:
        model: Any classifier ``nn.Module``; a mapping batch is passed to it as keyword arguments.
        num_classes: Classes in the data; linked from ``data.num_classes`` by the CLI and checked against the model.
        learning_rate: AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_fraction: Fraction of the training steps with a linear learning-rate warm-up, followed by linear
            decay to zero; 0 keeps the learning rate constant.
        dropout: Dropout probability of ``model`` while it trains: None keeps the model's own (a Hugging Face
            config's, e.g. 0.1); 0 turns dropout off; any other value replaces every dropout layer's probability
            (and the Hugging Face config's, so a saved model says what it was trained with). Whatever mode the model
            arrives in (``from_pretrained`` returns it in eval mode), the module puts it in train mode when fitting
            starts, so dropout is this setting's choice, not an accident of how the model was loaded.

    A checkpoint of a structurally pruned model (see
    :class:`~lightning_distill.lightning.callbacks.StructuredPruning`) loads
    into the freshly built, unpruned model (``trainer.test(module, ckpt_path=...)``, ``load_state_dict``): its
    Linears are first shrunk to the checkpoint's sizes.
    """

    def __init__(
        self,
        model: nn.Module,
        num_classes: int | None = None,
        learning_rate: float = 1e-3,
        weight_decay: float = 0.0,
        warmup_fraction: float = 0.0,
        dropout: float | None = None,
    ) -> None:
        super().__init__()
        if learning_rate <= 0:
            raise ValueError(f"learning_rate must be > 0, got {learning_rate}")
        if not 0.0 <= warmup_fraction < 1.0:
            raise ValueError(f"warmup_fraction must be in [0, 1), got {warmup_fraction}")
        check_dropout(dropout)
        check_num_classes(model, num_classes)
        self.save_hyperparameters(ignore=["model"])
        if dropout is not None:
            set_dropout(model, dropout)
        self.model = model
        self.num_classes = num_classes
        self.top1 = TopOneMetrics()

    def on_fit_start(self) -> None:
        # Lightning keeps each submodule's mode at fit start; the model trains in train mode, whatever it came in.
        self.train()

    @override
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        # A structurally pruned checkpoint has smaller layers than the freshly built model: shrink them to fit first.
        resize_to_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def forward(self, inputs: Any) -> Tensor:
        return logits_of(self.model, inputs)

    def setup(self, stage: str) -> None:
        # A tokenizer larger than the model's embedding table fails deep inside the model; say so before any step.
        from lightning_distill.core.models.text import check_tokenizer_fits

        vocab_size = getattr(getattr(self.trainer, "datamodule", None), "vocab_size", None)
        if vocab_size is not None:
            check_tokenizer_fits(vocab_size, self.model, "model")

    def _shared_step(self, batch: Any, batch_idx: int, stage: str) -> Tensor:
        logits = self(student_inputs(batch))
        labels = batch_labels(batch)
        loss = F.cross_entropy(logits, labels)
        check_finite(self, stage, batch, batch_idx, loss)
        n = batch_size(batch)
        # val/test losses are averaged over the epoch: over every process's batches (train logs per step, unsynced)
        self.log(f"{stage}/loss", loss, prog_bar=stage != "test", batch_size=n, sync_dist=stage != "train")
        log_top1(self, f"{stage}/acc", logits, labels, n, prog_bar=True)
        return loss

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self._shared_step(batch, batch_idx, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "val")

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._shared_step(batch, batch_idx, "test")

    def predict_step(self, batch: Any, batch_idx: int) -> Tensor:
        return self(student_inputs(batch))  # logits: PredictionWriter turns them into label ids and probabilities

    def configure_optimizers(self) -> Any:
        return build_optimizer(
            self, self.hparams.learning_rate, self.hparams.weight_decay, self.hparams.warmup_fraction
        )


def fused_supported(params: list[nn.Parameter]) -> bool:
    """Whether AdamW's fused kernel (one kernel over all tensors: what ``transformers.Trainer`` uses by default) can
    step ``params``: plain floating-point tensors on CPU or CUDA, not sharded ``DTensor`` s."""
    return bool(params) and all(
        type(p.data) is torch.Tensor and p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


def gradients_stay_scaled(trainer: Any) -> bool:
    """Whether Lightning would hand a fused optimizer gradients still multiplied by the loss scale: 16-bit AMP with a
    ``GradScaler`` outside FSDP. Gradient clipping then fails, and callbacks that read gradients before the step
    (Taylor pruning scores) would see them scaled, so such fits keep the ``foreach`` kernel."""
    from lightning.pytorch.plugins.precision import FSDPPrecision

    plugin = getattr(trainer, "precision_plugin", None)
    return getattr(plugin, "scaler", None) is not None and not isinstance(plugin, FSDPPrecision)


def _keep_kernel_on_load(optimizer: torch.optim.Optimizer) -> None:
    """Loading an optimizer state replaces each group's ``fused``/``foreach`` flags with the saved ones, which may not
    match the kernel this optimizer was built for (a checkpoint from before fused AdamW, or from another machine):
    keep the flags it was built with."""
    built = [(group.get("fused"), group.get("foreach")) for group in optimizer.param_groups]

    def hook(_: torch.optim.Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
        groups = [dict(group) for group in state_dict["param_groups"]]
        for group, (fused, foreach) in zip(groups, built, strict=False):
            group["fused"], group["foreach"] = fused, foreach
        return {**state_dict, "param_groups": groups}

    optimizer.register_load_state_dict_pre_hook(hook)


def build_optimizer(
    module: pl.LightningModule, learning_rate: float, weight_decay: float, warmup_fraction: float
) -> Any:
    """AdamW over the trainable parameters (fused kernel where :func:`fused_supported` and the precision allow it),
    with an optional linear warm-up then linear decay."""
    trainable = getattr(module, "trainable_parameters", None)
    params = list(trainable()) if trainable is not None else [p for p in module.parameters() if p.requires_grad]
    fused = fused_supported(params) and not gradients_stay_scaled(getattr(module, "_trainer", None))
    optimizer = torch.optim.AdamW(params, lr=learning_rate, weight_decay=weight_decay, fused=fused or None)
    _keep_kernel_on_load(optimizer)
    if warmup_fraction <= 0:
        return optimizer
    total = max(1, int(module.trainer.estimated_stepping_batches))
    warmup = max(1, int(total * warmup_fraction))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(1, total - warmup))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
