"""Hyperparameter search with Optuna: ``lightning-distill tune --config configs/digits/tune.yaml``.

Needs the ``[tune]`` extra (optuna): importing this package without it raises an ImportError that names the extra.
"""

from lightning_distill.lightning.tuning.config import SearchRange, TuneConfig, TuneConfigError, load_tune_config
from lightning_distill.lightning.tuning.pruning import OptunaPruning
from lightning_distill.lightning.tuning.search import (
    check_search_keys,
    check_search_space,
    trial_arguments,
    tune,
    write_best_config,
)

__all__ = [
    "OptunaPruning",
    "SearchRange",
    "TuneConfig",
    "TuneConfigError",
    "check_search_keys",
    "check_search_space",
    "load_tune_config",
    "trial_arguments",
    "tune",
    "write_best_config",
]
