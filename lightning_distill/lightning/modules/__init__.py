"""LightningModules: step logic, logging and optimizer wiring around injected models and losses."""

from lightning_distill.core.models.weights import load_teacher_weights
from lightning_distill.lightning.modules.classifier import ClassifierModule
from lightning_distill.lightning.modules.distillation import DistillationModule

__all__ = ["ClassifierModule", "DistillationModule", "load_teacher_weights"]
