"""The text-classification compression recipe ``recipes/clinc.py`` and ``recipes/clinc_offline.py`` share.

- :mod:`.settings`: :class:`TextRecipeSettings`, the command-line options that fill them, and the settings each step
  depends on (:data:`STEP_OPTIONS`).
- :mod:`.steps`: :class:`TextRecipeSteps`, one method per step (teacher, distill, prune, offset, quantize, export,
  benchmark, report), and :func:`build`, which adds them to a :class:`~lightning_distill.recipes.engine.Recipe`.
- :mod:`.offset`: the offset step's reject-class offset of each student.
- :mod:`.fit`: a config as a dict, changed and run by the LightningCLI; the prune step's schedule.
- :mod:`.report`: the report and the targets it checks (the user's ``--target-*`` options).
- :mod:`.artifacts`: loading what the steps saved. :mod:`.inputs`: checks of the inputs before any training.
"""

from lightning_distill.recipes.text.artifacts import (
    FirstExamples,
    embedding_is_int8,
    forward_inputs,
    has_tokenizer,
    load_classifier,
    load_pruned_classifier,
    weights_file,
)
from lightning_distill.recipes.text.fit import PRUNING_POINTS, gradual_pruning, train_batches
from lightning_distill.recipes.text.inputs import hub_problem, is_local, missing_paths
from lightning_distill.recipes.text.report import EMB4, INT8, ONNX_ARTIFACTS, PRE_OFFSET, REFERENCE
from lightning_distill.recipes.text.settings import (
    STEP_OPTIONS,
    TextRecipeSettings,
    add_common_options,
    common_settings,
    step_options,
)
from lightning_distill.recipes.text.steps import TextRecipeSteps, build

__all__ = [
    "EMB4",
    "INT8",
    "ONNX_ARTIFACTS",
    "PRE_OFFSET",
    "PRUNING_POINTS",
    "REFERENCE",
    "STEP_OPTIONS",
    "FirstExamples",
    "TextRecipeSettings",
    "TextRecipeSteps",
    "add_common_options",
    "build",
    "common_settings",
    "embedding_is_int8",
    "forward_inputs",
    "gradual_pruning",
    "has_tokenizer",
    "hub_problem",
    "is_local",
    "load_classifier",
    "load_pruned_classifier",
    "missing_paths",
    "step_options",
    "train_batches",
    "weights_file",
]
