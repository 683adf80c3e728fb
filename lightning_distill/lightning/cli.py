"""``DistillCLI``: LightningCLI with ``fit``/``validate``/``test``/``predict``, ``benchmark`` and ``export`` (methods of
:class:`~lightning_distill.lightning.trainer.DistillTrainer`). The ``lightning-distill`` command adds ``tune`` on top of
it (:mod:`lightning_distill.lightning.main`), so this module never imports the tuning package that runs ``DistillCLI``
trials.

Models, data modules, losses and callbacks are chosen in YAML with ``class_path``/``init_args``, or by their short
class name (``--model DistillationModule``, ``--trainer.callbacks+=MagnitudePruning``). Values that belong to the data
(``num_classes``, ``in_features``, ``id2label``) are written once, on the data module, and linked into the
LightningModule and into the models it holds (``model``, ``student``, ``teacher``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, _InstantiatorFn
from typing_extensions import override

# jsonargparse resolves a short class name (``DistillationModule``, ``MagnitudePruning``, ``TinyMNIST``, ``KDLoss``)
# among the imported subclasses of the expected type, so every class a config may name is imported before parsing. A
# name two imported classes share (``MLP``: also ``torchvision.ops.MLP``) is refused with both full paths to choose.
from lightning_distill.core import losses, models
from lightning_distill.core.errors import ConfigValueError, UserError
from lightning_distill.core.safe_load import load_file
from lightning_distill.lightning import callbacks, data, modules
from lightning_distill.lightning._argument_errors import condense_argument_error
from lightning_distill.lightning.callbacks.prediction_writer import PredictionWriter
from lightning_distill.lightning.trainer import DistillTrainer, check_artifact, check_benchmark_weights

SHORT_NAME_PACKAGES = (callbacks, data, losses, models, modules)

# Attributes a data module may expose, and where they go in the model config.
LINKED_DATA_ATTRIBUTES = ("num_classes", "in_features", "id2label")
_LINK_TARGETS = (
    "model.init_args.{}",
    "model.init_args.model.init_args.{}",
    "model.init_args.student.init_args.{}",
    "model.init_args.teacher.init_args.{}",
)


def output_arguments(
    config: Mapping[str, Any], root_dir: str | Path, log_dir: str | Path, checkpoint_dir: str | Path
) -> list[str]:
    """Command-line overrides that move where a config's run writes: ``trainer.default_root_dir`` to ``root_dir``,
    every logger's ``save_dir`` to ``log_dir`` and every callback's ``dirpath`` (checkpoints) to ``checkpoint_dir``.

    Args:
        config: The config file's mapping (``yaml.safe_load`` of it).
        root_dir: New ``trainer.default_root_dir``.
        log_dir: New ``save_dir`` of the loggers that set one.
        checkpoint_dir: New ``dirpath`` of the callbacks that set one.
    """
    trainer = config.get("trainer") or {}
    args = [f"--trainer.default_root_dir={root_dir}"]
    if isinstance(trainer.get("logger"), dict | list):
        args.append(f"--trainer.logger={json.dumps(_moved(trainer['logger'], 'save_dir', log_dir))}")
    if isinstance(trainer.get("callbacks"), dict | list):
        args.append(f"--trainer.callbacks={json.dumps(_moved(trainer['callbacks'], 'dirpath', checkpoint_dir))}")
    return args


def _moved(value: Any, argument: str, folder: str | Path) -> Any:
    """``value`` (a class_path/init_args mapping or a list of them) with ``init_args[argument]`` set to ``folder``."""
    if isinstance(value, list):
        return [_moved(item, argument, folder) for item in value]
    init_args = value.get("init_args") if isinstance(value, dict) else None
    if not isinstance(init_args, dict) or argument not in init_args:
        return value
    return {**value, "init_args": {**init_args, argument: str(folder)}}


class _LinkTolerantInstantiator(_InstantiatorFn):
    """Lightning's instantiator, ignoring data links whose target the chosen model classes do not have.

    The CLI links ``data.num_classes`` into every place a model may take it; a ``ClassifierModule`` has no
    ``student``, an HF model no ``in_features``, and only the links that exist in the config apply.
    """

    @override
    def __call__(self, class_type: type, *args: Any, applied_instantiation_links: dict, **kwargs: Any) -> Any:
        # Private, as the base class is: the config dump Lightning records as hyperparameters has no public accessor.
        self.cli._dump_config()
        dumped = self.cli.config_dump.get(self.key, {})
        kept = {k: v for k, v in applied_instantiation_links.items() if _has_target(dumped, k, self.key)}
        return super().__call__(class_type, *args, applied_instantiation_links=kept, **kwargs)


def _has_target(config: dict, link_key: str, root: str) -> bool:
    """Whether the dumped ``config`` of ``root`` has the parameter a link points at."""
    if not link_key.startswith(f"{root}."):
        return True
    node: Any = config
    parts = link_key[len(root) + 1 :].split(".")
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return isinstance(node, dict) and parts[-1] in node


class DistillCLI(LightningCLI):
    """LightningCLI for lightning-distill; see the module docstring."""

    def __init__(self, args: list[str] | dict[str, Any] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        kwargs.setdefault("trainer_class", DistillTrainer)
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        # num_threads: the CLI's own --num_threads (set before anything is built) stands in for the method's.
        measures = {"model", "datamodule", "num_threads"}
        return {**LightningCLI.subcommands(), "benchmark": measures, "export": measures}

    @override
    def setup_parser(
        self, add_subcommands: bool, main_kwargs: dict[str, Any], subparser_kwargs: dict[str, Any]
    ) -> None:
        super().setup_parser(add_subcommands, main_kwargs, subparser_kwargs)
        for subcommand in ("benchmark", "export"):  # comparable latencies across machines and reruns
            if add_subcommands and subcommand in self.subcommands():
                self.parser.set_defaults({f"{subcommand}.num_threads": 1})
        if add_subcommands and "predict" in self.subcommands():
            # predict writes its rows (--predictions.path, --predictions.probabilities, --predictions.enabled).
            # Private: LightningCLI calls add_arguments_to_parser without saying which subcommand's parser it is, so
            # the predict parser is reached through the map LightningCLI keeps of them.
            self._subcommand_parsers["predict"].add_lightning_class_args(PredictionWriter, "predictions")
            # the rows are in the file: Lightning keeping every batch's logits too would make memory grow with the split
            self.parser.set_defaults({"predict.return_predictions": False})

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--num_threads",
            type=PositiveInt | None,
            default=None,
            help="PyTorch intra-op threads of this run (torch.set_num_threads), set before anything is built. "
            "null keeps the process's setting (torch's default: one per physical core); the saved config records "
            "the number used. benchmark defaults to 1. The digits recipe fits with 1; the mnist and CLINC recipes "
            "keep torch's default.",
        )
        for attribute in LINKED_DATA_ATTRIBUTES:
            for target in _LINK_TARGETS:
                parser.link_arguments(
                    "data",
                    target.format(attribute),
                    compute_fn=_data_attribute(attribute),
                    apply_on="instantiate",
                )

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads a checkpoint's hyperparameters right after parsing; a file that is unsafe (pickled code)
        # or broken is refused here first, by name, rather than by an unpickling error from inside Lightning.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if subcommand in ("benchmark", "export"):
            # Before anything is built: a model without trained weights would be measured and reported as a result.
            artifact = self.config[subcommand].get("artifact")
            try:
                check_benchmark_weights(ckpt_path, self.config[subcommand].weights, artifact, command=subcommand)
                if artifact is not None:
                    check_artifact(artifact)
            except (ValueError, FileNotFoundError) as error:
                parser.error(str(error))
        try:
            check_ckpt_path(ckpt_path)
        except OSError as error:
            parser.error(str(error))
        if isinstance(ckpt_path, str) and Path(ckpt_path).is_file():
            try:
                load_file(ckpt_path, "ckpt_path")
            except ValueError as error:  # empty or unreadable: the user's file, as an unsafe one (a UserError) is
                if isinstance(error, UserError):
                    raise
                raise ConfigValueError(str(error)) from error

    @override
    def instantiate_classes(self) -> None:
        try:
            super().instantiate_classes()
        except ValueError as error:  # a class of the config refused an argument (``batch_size: 0``)
            cause = _user_error_in(error)
            if cause is not None:
                raise cause from None
            raise ConfigValueError(condense_argument_error(str(error))) from error

    @override
    def instantiate_trainer(self, **kwargs: Any) -> Any:
        trainer = super().instantiate_trainer(**kwargs)
        default = self.config_init[self.subcommand].get("predictions") if self.subcommand == "predict" else None
        if default is not None and (
            not default.enabled
            or any(isinstance(c, BasePredictionWriter) and c is not default for c in trainer.callbacks)
        ):  # --predictions.enabled false, or the config's own prediction writer (in trainer.callbacks) replaces it
            trainer.callbacks = [c for c in trainer.callbacks if c is not default]
        return trainer

    @override
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("num_threads") is not None:
            torch.set_num_threads(config.num_threads)
        config.num_threads = torch.get_num_threads()  # the saved config.yaml records the count the run used

    # Private: Lightning's instantiator (which records hyperparameters for load_from_checkpoint) asserts that every
    # applied link target exists; no public hook replaces it, so the tolerant one is registered in its place.
    @override
    def _add_instantiators(self) -> None:
        self.parser.add_instantiator(
            _LinkTolerantInstantiator(cli=self, key="model"), pl.LightningModule, subclasses=self.subclass_mode_model
        )
        self.parser.add_instantiator(
            _LinkTolerantInstantiator(cli=self, key="data"), pl.LightningDataModule, subclasses=self.subclass_mode_data
        )


def _user_error_in(error: BaseException) -> UserError | None:
    """The first :class:`UserError` among ``error`` and the errors it was raised from (jsonargparse wraps them)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def check_ckpt_path(ckpt_path: str | None) -> None:
    """Refuse a ``--ckpt_path`` that names no file, before anything is built; the message lists the ``.ckpt`` files
    the folder it names (or the folder of the missing file) holds.

    Lightning's own values (``best``, ``last``, ``hpc``, ``registry[:...]``) and remote URLs (``s3://...``) pass.

    Raises:
        IsADirectoryError: ``ckpt_path`` is a folder.
        FileNotFoundError: nothing is at ``ckpt_path``.
    """
    if ckpt_path is None or ckpt_path in _LIGHTNING_CKPT_VALUES or ckpt_path.startswith("registry:"):
        return
    if "://" in ckpt_path:
        return
    path = Path(ckpt_path)
    if path.is_dir():
        raise IsADirectoryError(
            f"--ckpt_path {ckpt_path} is a folder; pass a .ckpt file{_checkpoints_in(path, recursive=True)}"
        )
    if not path.exists():
        where = _checkpoints_in(path.parent, recursive=False) if path.parent.is_dir() else ""
        raise FileNotFoundError(f"--ckpt_path {ckpt_path} does not exist; pass a .ckpt file{where}")


_LIGHTNING_CKPT_VALUES = ("best", "last", "hpc", "registry")
_LISTED_CHECKPOINTS = 5


def _checkpoints_in(folder: Path, recursive: bool) -> str:
    """``", such as A, B"`` for the ``.ckpt`` files under ``folder`` (the first few), or why there are none."""
    found = sorted(folder.rglob("*.ckpt") if recursive else folder.glob("*.ckpt"))
    if not found:
        return f" ({folder} holds none: `lightning-distill fit` writes them under the run's checkpoints/ folder)"
    shown = ", ".join(str(path) for path in found[:_LISTED_CHECKPOINTS])
    more = f" and {len(found) - _LISTED_CHECKPOINTS} more" if len(found) > _LISTED_CHECKPOINTS else ""
    return f", such as {shown}{more}"


def _data_attribute(attribute: str) -> Any:
    def compute(datamodule: pl.LightningDataModule) -> Any:
        return getattr(datamodule, attribute, None)

    return compute


def cli_main(args: list[str] | dict[str, Any] | None = None, run: bool = True) -> DistillCLI:
    """Run the CLI in-process and return it.

    ``args`` are as on the command line, or a config as a dict (what a YAML file holds; with ``run``, under
    ``{"subcommand": "fit", "fit": {...}}``), parsed by LightningCLI with ``parse_object``: values keep their Python
    types. None reads ``sys.argv``.

    With ``args``, the calling script's own command line is hidden from LightningCLI, which would otherwise warn that
    it got both.
    """
    if args is None:
        return DistillCLI(args=None, run=run)
    script_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        return DistillCLI(args=args, run=run)
    finally:
        sys.argv = script_argv


if __name__ == "__main__":  # DistillCLI alone; the full command, with ``tune``, is ``python -m lightning_distill``
    cli_main()
