"""Quantization-aware training: fake-quantize the model while it trains, convert a copy to int8 when fit ends."""

from __future__ import annotations

import copy
import dataclasses
import weakref
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from torch import nn
from typing_extensions import override

from lightning_distill.core.benchmark import file_size_mb
from lightning_distill.core.quantization import (
    QATConfig,
    QuantizationReport,
    freeze_qat_batchnorm,
    prepare_qat_,
    quantize,
    set_qat_observers,
)
from lightning_distill.core.quantization.quantize import check_engine
from lightning_distill.lightning.callbacks._post_fit import (
    Checkpoint,
    artifact_dir,
    best_checkpoint_path,
    check_batch,
    check_choices,
    describe,
    load_checkpoint,
    model_attribute_of,
    save_checked_quantized,
    submodel,
    submodule_state,
)

_QAT_KEYS = "_qat_state_keys"
_DEFAULT_CONFIG = QATConfig()  # frozen: one shared default instance is safe
_OWNER = "QuantizationAwareTraining"
# The float model as it was before prepare_qat_, by prepared model: load_quantized rebuilds the int8 artifact on it.
_FLOAT_MODELS: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def _tolerate_missing_qat_state(module: nn.Module, incompatible_keys: Any) -> None:
    """Load-state-dict post hook: a float checkpoint lacks the fake-quantize state, which the callback restores."""
    own = getattr(module, _QAT_KEYS, frozenset())
    missing = incompatible_keys.missing_keys
    missing[:] = [k for k in missing if not any(k == q or k.endswith("." + q) for q in own)]


def _replace_submodel(pl_module: pl.LightningModule, attribute: str, prepared: nn.Module) -> None:
    if not attribute:
        raise ValueError(
            f"{_OWNER}: model_attribute='self' needs a LightningModule built only from eager-quantizable modules; this "
            "one is prepared through FX graph mode, which returns a new module and cannot replace the LightningModule. "
            "Name the submodule that is the model (e.g. model_attribute='model')"
        )
    parent_name, _, child_name = attribute.rpartition(".")
    setattr(pl_module.get_submodule(parent_name), child_name, prepared)


class QuantizationAwareTraining(Callback):
    """Trains with fake-quantized weights and activations and saves an int8 copy at the end of fit.

    In ``setup`` (of every stage, so ``trainer.test(ckpt_path=...)`` and resuming see the same model) the model is
    prepared with ``prepare_qat_``: ``Linear + ReLU`` (and through FX graph mode, for models such as CNNs,
    ``Conv + BatchNorm + ReLU``) are fused and fake quantization is inserted, while every parameter keeps its object
    and the state dict keeps its names (an FX-prepared model replaces the submodule in the LightningModule), so
    optimizers and pruning callbacks such as :class:`MagnitudePruning` work unchanged. The checkpoint format does
    not change either: the fake-quantize state
    (observer ranges, scales) is moved out of ``state_dict`` into this callback's own checkpoint entry, so a
    checkpoint of a QAT run loads into the plain float model, and a resumed run gets its observer state back. (With
    ``ModelCheckpoint(save_weights_only=True)`` Lightning skips callback state, so the fake-quantize state then stays
    in ``state_dict`` and the checkpoint is reloaded with this callback present.)

    Observers are held while validating, testing and predicting (they would otherwise adapt the ranges to the
    evaluation data, since they run in eval mode too) and from ``config.freeze_observers_epoch`` on.

    At the end of fit a *copy* is converted to int8 (``quantize(model, QATConfig(step="convert"))``) and saved with
    ``save_quantized`` under ``<log dir>/<dirname>/<filename>``; the LightningModule stays in fake-quantized float.
    The file is then loaded back with ``load_quantized`` and run on one validation batch (a training batch where the
    fit has none); it must give the in-memory int8 model's logits, or the fit fails naming the file. The per-layer
    summary is logged and written beside it as ``<name>.report.json``. The model, its QAT support and the artifact
    folder (created and written to) are checked in ``setup``, before the first training step.

    Args:
        config: QAT settings; ``freeze_observers_epoch`` and ``freeze_bn_epoch`` freeze activation ranges and fused
            batch-norm statistics from that epoch on. Its ``step`` must be ``prepare``.
        checkpoint: ``last`` (default) or ``best`` weights and fake-quantize state for the int8 copy.
        model_attribute: ``auto``, a submodule name or dotted path, or ``self`` (see :class:`PostTrainingQuantization`).
        dirname: Folder under the run's log dir.
        filename: File name of the int8 model.
    """

    def __init__(
        self,
        config: QATConfig = _DEFAULT_CONFIG,
        checkpoint: Checkpoint = "last",
        model_attribute: str = "auto",
        dirname: str = "quantized",
        filename: str = "qat_int8.pt",
    ) -> None:
        if not isinstance(config, QATConfig) or config.step != "prepare":
            raise ValueError(
                f"QuantizationAwareTraining: config must be a QATConfig with step='prepare'; got {config!r} (the "
                "callback converts a copy at the end of fit itself)"
            )
        if config.engine != "eager":
            raise ValueError(
                f"QuantizationAwareTraining runs the eager engine only; got engine={config.engine!r}: use "
                "quantize(model, QATConfig(engine='torchao'), calibration_data=...) in your own training loop"
            )
        check_engine(config)  # a PyTorch without torch.ao.quantization fails here, not at setup
        check_choices("QuantizationAwareTraining", checkpoint, model_attribute, dirname)
        self.config = config
        self.checkpoint = checkpoint
        self.model_attribute = model_attribute
        self.dirname = dirname
        self.filename = filename
        self.artifact_path: Path | None = None
        self.report: QuantizationReport | None = None
        self._attribute: str | None = None
        self._folder: Path | None = None
        self._model: nn.Module | None = None
        self._pending: dict[str, Any] | None = None

    @property
    def qat_keys(self) -> frozenset[str]:
        """Names (relative to the model) of the fake-quantize state entries."""
        return getattr(self._model, _QAT_KEYS, frozenset()) if self._model is not None else frozenset()

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._attribute = model_attribute_of(pl_module, self.model_attribute, _OWNER)
        model = submodel(pl_module, self._attribute)
        if getattr(model, _QAT_KEYS, None) is None:
            float_keys = set(model.state_dict())
            float_model = copy.deepcopy(model).cpu()
            prepared = prepare_qat_(model, self.config)
            if prepared is not model:  # traced with FX graph mode: a new module sharing the parameters
                _replace_submodel(pl_module, self._attribute, prepared)
                model = prepared
            _FLOAT_MODELS[model] = float_model
            setattr(model, _QAT_KEYS, frozenset(set(model.state_dict()) - float_keys))
            model.register_load_state_dict_post_hook(_tolerate_missing_qat_state)
        self._model = model
        if self._pending is not None:
            self._restore(self._pending)
        if stage == "fit":
            if model not in _FLOAT_MODELS:
                raise ValueError(
                    f"{_OWNER}: {describe(self._attribute)} was prepared for QAT outside this callback, so there is no "
                    "float model to reload the int8 artifact on; pass the float model and let the callback prepare it"
                )
            self._folder = artifact_dir(trainer, self.dirname, _OWNER)

    def _observing(self, epoch: int) -> bool:
        frozen_from = self.config.freeze_observers_epoch
        return frozen_from is None or epoch < frozen_from

    @override
    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        set_qat_observers(self._model, self._observing(epoch))
        if self.config.freeze_bn_epoch is not None and epoch >= self.config.freeze_bn_epoch:
            freeze_qat_batchnorm(self._model)

    # Observers run in eval mode too: evaluation data must not move the ranges the int8 model will use.
    @override
    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        set_qat_observers(self._model, False)

    @override
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.training or trainer.state.fn == "fit":
            set_qat_observers(self._model, self._observing(trainer.current_epoch))

    @override
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        set_qat_observers(self._model, False)

    @override
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        set_qat_observers(self._model, False)

    # --- checkpoints hold the float state dict; the fake-quantize state travels in the callback's entry -----------

    @override
    def state_dict(self) -> dict[str, Any]:
        if self._model is None:
            return {}
        state = self._model.state_dict()
        return {"qat_state": {k: v.detach().cpu() for k, v in state.items() if k in self.qat_keys}}

    @override
    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        prefix = f"{self._attribute}." if self._attribute else ""
        for key in self.qat_keys:
            checkpoint["state_dict"].pop(prefix + key, None)

    @override
    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        qat_state = state_dict.get("qat_state")
        if not qat_state:
            return
        if self._model is None:  # loaded before setup: applied there
            self._pending = qat_state
        else:
            self._restore(qat_state)

    def _restore(self, qat_state: dict[str, Any], model: nn.Module | None = None) -> None:
        target = model if model is not None else self._model
        unexpected = target.load_state_dict(qat_state, strict=False).unexpected_keys
        if unexpected:
            raise ValueError(
                f"QuantizationAwareTraining: saved fake-quantize state does not fit the model: {unexpected}"
            )
        self._pending = None

    # --- the int8 artifact -------------------------------------------------------------------------------------------

    @override
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.is_global_zero or self._model is None or self._folder is None:
            return
        model = copy.deepcopy(self._model).cpu()
        path = best_checkpoint_path(trainer) if self.checkpoint == "best" else None
        if path is not None:
            saved = load_checkpoint(path)
            model.load_state_dict(submodule_state(saved["state_dict"], self._attribute), strict=True)
            qat_state = saved.get("callbacks", {}).get(self.state_key, {}).get("qat_state")
            if qat_state:
                self._restore(qat_state, model)
        converted = quantize(model, dataclasses.replace(self.config, step="convert"))
        batch = check_batch(trainer, _OWNER)
        path = self._folder / self.filename
        path = save_checked_quantized(_OWNER, converted, _FLOAT_MODELS[self._model], path, batch)
        self.artifact_path, self.report = path, converted.quantization_report
        rank_zero_info(
            f"{_OWNER}: saved the int8 model of {describe(self._attribute)} to {path} ({file_size_mb(path):.3f} MB), "
            f"loaded back and checked on a {batch[1]} batch"
        )
