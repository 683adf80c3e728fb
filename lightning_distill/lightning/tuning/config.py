"""The search spec of ``lightning-distill tune``: a base config, float ranges over its keys, and the study settings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

_DIRECTIONS = ("maximize", "minimize")


class TuneConfigError(ValueError):
    """A tune spec, its search space, or the base config it points at cannot be searched; the message says why."""


def refuse_unknown_keys(spec: dict[str, Any], kind: type, where: str, error: type[ValueError]) -> None:
    """Raise ``error`` naming the keys of ``spec`` that are no field of the dataclass ``kind``, and the allowed ones."""
    allowed = [f.name for f in dataclasses.fields(kind)]
    unknown = sorted(set(spec) - set(allowed))
    if unknown:
        raise error(f"{where}: unknown keys {unknown}; allowed keys are {allowed}")


@dataclass(frozen=True)
class SearchRange:
    """A float range Optuna samples one config key from.

    Args:
        key: Dotted key of the base config the value goes to, e.g. ``model.init_args.learning_rate``.
        low: Smallest value (inclusive).
        high: Largest value (inclusive); must be greater than ``low``.
        log: Sample uniformly in log space (learning rates, temperatures); needs ``low > 0``.
    """

    key: str
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        where = f"search_space[{self.key!r}]"
        for name in ("low", "high"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise TuneConfigError(f"{where}: {name} must be a finite number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.log, bool):
            raise TuneConfigError(f"{where}: log must be true or false, got {self.log!r}")
        if self.low >= self.high:
            raise TuneConfigError(
                f"{where}: empty range, low ({self.low}) must be smaller than high ({self.high}); "
                "to fix a value, set it in the base config instead"
            )
        if self.log and self.low <= 0:
            raise TuneConfigError(f"{where}: log: true needs low > 0, got low={self.low}")

    @property
    def short_name(self) -> str:
        """The key's last part (``temperature``), for progress lines."""
        return self.key.rsplit(".", 1)[-1]


@dataclass(frozen=True)
class TuneConfig:
    """What ``lightning-distill tune`` searches and where it keeps the study.

    Relative paths are taken from the working directory, like every path in the configs.

    Args:
        base_config: LightningCLI config every trial fits (``fit --config base_config`` plus the trial's values).
        search_space: Ranges by dotted config key; every key must exist in the base config.
        study_name: Name of the Optuna study in ``storage``; the same name resumes the same study.
        storage: Optuna storage URL, a local SQLite file such as ``sqlite:///runs/tune/digits.db``.
        n_trials: Finished (complete or pruned) trials the study should have; trials of an earlier, stopped search
            count, so a rerun only runs the rest.
        direction: Whether ``metric`` is maximized or minimized.
        metric: Validation metric the trials are ranked and pruned by, as logged (``val/acc``).
        max_epochs: Epochs per trial; None keeps the base config's ``trainer.max_epochs``.
        output_dir: Folder of the trials' runs (``trial_000``, ``trial_001``, ...: logs, checkpoints, config).
        output: Where the best config is written; None means ``<output_dir>/best.yaml``.
        seed: Seed of the TPE sampler (offset by the trials already in the study, so a resumed search samples anew).
        sampler_startup_trials: Random trials before TPE starts to model the results.
        pruner_startup_trials: Trials that run to the end before the median pruner may stop any.
        pruner_warmup_epochs: Validation rounds of each trial before it can be pruned.
    """

    base_config: str
    search_space: dict[str, SearchRange]
    study_name: str = "tune"
    storage: str = "sqlite:///runs/tune/tune.db"
    n_trials: int = 20
    direction: Literal["maximize", "minimize"] = "maximize"
    metric: str = "val/acc"
    max_epochs: int | None = None
    output_dir: str = "runs/tune"
    output: str | None = None
    seed: int = 0
    sampler_startup_trials: int = 5
    pruner_startup_trials: int = 2
    pruner_warmup_epochs: int = 1

    def __post_init__(self) -> None:
        if not self.search_space:
            raise TuneConfigError("search_space is empty: give at least one key with low and high")
        for key, value in self.search_space.items():
            if not isinstance(value, SearchRange) or value.key != key:
                raise TuneConfigError(f"search_space[{key!r}] must be a SearchRange for that key, got {value!r}")
        if self.direction not in _DIRECTIONS:
            raise TuneConfigError(f"direction must be one of {_DIRECTIONS}, got {self.direction!r}")
        for name in ("n_trials", "sampler_startup_trials", "pruner_startup_trials", "pruner_warmup_epochs", "seed"):
            value = getattr(self, name)
            minimum = 1 if name == "n_trials" else 0
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise TuneConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if self.max_epochs is not None and (not isinstance(self.max_epochs, int) or self.max_epochs < 1):
            raise TuneConfigError(f"max_epochs must be a positive integer or null, got {self.max_epochs!r}")
        for name in ("base_config", "study_name", "storage", "metric", "output_dir"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise TuneConfigError(f"{name} must be a non-empty string, got {getattr(self, name)!r}")

    @property
    def best_config_path(self) -> Path:
        """Where the best config goes: ``output``, or ``<output_dir>/best.yaml``."""
        return Path(self.output) if self.output else Path(self.output_dir) / "best.yaml"

    def replace(self, **changes: Any) -> TuneConfig:
        """A copy with ``changes`` (e.g. ``n_trials``, ``output`` from the command line), validated again."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, spec: dict[str, Any], source: str = "the tune config") -> TuneConfig:
        """Build from a parsed YAML mapping; unknown keys, at the top or inside a range, are refused by name."""
        if not isinstance(spec, dict):
            raise TuneConfigError(f"{source} must be a mapping of settings, got {type(spec).__name__}")
        refuse_unknown_keys(spec, cls, source, TuneConfigError)
        missing = [name for name in ("base_config", "search_space") if name not in spec]
        if missing:
            raise TuneConfigError(f"{source}: missing required keys {missing}")
        space = spec["search_space"]
        if not isinstance(space, dict):
            raise TuneConfigError(f"{source}: search_space must map config keys to {{low, high, log}}, got {space!r}")
        try:
            ranges = {key: _range(key, entry) for key, entry in space.items()}
            return cls(**{**spec, "search_space": ranges})
        except TuneConfigError as error:
            raise TuneConfigError(f"{source}: {error}") from None


def _range(key: str, entry: Any) -> SearchRange:
    if not isinstance(entry, dict):
        raise TuneConfigError(
            f"search_space[{key!r}] must be a mapping with low, high and optionally log, got {entry!r}"
        )
    unknown = sorted(set(entry) - {"low", "high", "log"})
    if unknown:
        raise TuneConfigError(f"search_space[{key!r}]: unknown keys {unknown}; allowed keys are low, high, log")
    if "low" not in entry or "high" not in entry:
        raise TuneConfigError(f"search_space[{key!r}] needs both low and high, got {entry}")
    return SearchRange(key=key, **entry)


def load_tune_config(path: str | Path, **changes: Any) -> TuneConfig:
    """Read a tune spec from YAML; ``changes`` that are not None replace its values (command-line overrides)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"tune config {str(path)!r} does not exist")
    config = TuneConfig.from_dict(yaml.safe_load(path.read_text()), source=str(path))
    changes = {k: v for k, v in changes.items() if v is not None}
    return config.replace(**changes) if changes else config
