"""The ``lightning-distill`` command: LightningCLI with ``fit``/``validate``/``test``/``predict``, ``benchmark`` and
``tune``.

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
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from jsonargparse.typing import PositiveInt
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, _InstantiatorFn
from torch import nn
from typing_extensions import override

# jsonargparse resolves a short class name (``DistillationModule``, ``MagnitudePruning``, ``TinyMNIST``, ``KDLoss``)
# among the imported subclasses of the expected type, so every class a config may name is imported before parsing. A
# name two imported classes share (``MLP``: also ``torchvision.ops.MLP``) is refused with both full paths to choose.
from lightning_distill import callbacks, data, losses, models, modules
from lightning_distill.benchmark import benchmark_module, markdown_table, write_rows
from lightning_distill.pruning import resize_to_state_dict
from lightning_distill.safe_load import load_file

SHORT_NAME_PACKAGES = (callbacks, data, losses, models, modules)

# Attributes a data module may expose, and where they go in the model config.
LINKED_DATA_ATTRIBUTES = ("num_classes", "in_features", "id2label")
_LINK_TARGETS = (
    "model.init_args.{}",
    "model.init_args.model.init_args.{}",
    "model.init_args.student.init_args.{}",
    "model.init_args.teacher.init_args.{}",
)


def deployable_model(module: pl.LightningModule) -> nn.Module:
    """The model a LightningModule trains and a deployment would ship: ``student`` or ``model``."""
    for attribute in ("student", "model"):
        candidate = getattr(module, attribute, None)
        if isinstance(candidate, nn.Module):
            return candidate
    raise TypeError(
        f"{type(module).__name__} holds neither a 'student' nor a 'model' nn.Module; benchmark needs one of them"
    )


class _Benchmark:
    """The ``benchmark`` subcommand; LightningCLI generates its arguments from the method's signature."""

    def benchmark(
        self,
        model: pl.LightningModule,
        datamodule: pl.LightningDataModule,
        ckpt_path: str | None = None,
        name: str = "model",
        output: str = "runs/benchmark.json",
        split: str = "test",
        num_threads: int = 1,
        warmup: int = 10,
        iterations: int = 100,
        weights: Literal["checkpoint", "config"] = "checkpoint",
    ) -> None:
        """Measure accuracy, parameters, size on disk, batch-1 latency and throughput of a trained model.

        Args:
            model: The LightningModule of the config; its ``student`` (distillation) or ``model`` is measured.
            datamodule: The data module whose ``split`` is measured.
            ckpt_path: Checkpoint to load into the LightningModule before measuring; required unless ``weights`` is
                ``config``.
            name: Row name in the report.
            output: JSON file of benchmark rows; a row with the same name is replaced, others are kept.
            split: Data split to measure accuracy on.
            num_threads: PyTorch intra-op threads during the measurement.
            warmup: Untimed calls before the latency measurement.
            iterations: Timed batch-1 calls.
            weights: ``checkpoint``: measure the weights of ``ckpt_path``. ``config``: measure the weights the config's
                classes load themselves (a fine-tuned Hugging Face checkpoint given to ``from_pretrained``); the row
                says ``"weights": "config"``.
        """
        check_benchmark_weights(ckpt_path, weights)
        if ckpt_path is not None:
            checkpoint = load_file(ckpt_path, "ckpt_path")
            resize_to_state_dict(model, checkpoint["state_dict"])  # a structurally pruned model has smaller layers
            model.load_state_dict(checkpoint["state_dict"])
        datamodule.setup("test")
        row = benchmark_module(
            deployable_model(model),
            datamodule,
            name=name,
            split=split,
            num_threads=num_threads,
            warmup=warmup,
            iterations=iterations,
        )
        rows = write_rows([{**row.to_dict(), "weights": ckpt_path if weights == "checkpoint" else "config"}], output)
        print(markdown_table(rows))
        print(f"wrote {len(rows)} rows to {output}")


def check_benchmark_weights(ckpt_path: str | None, weights: str) -> None:
    """Refuse a benchmark that would measure untrained weights, or that names two sources of weights.

    Raises:
        ValueError: ``weights`` is ``checkpoint`` and there is no ``ckpt_path``, or ``config`` and there is one.
    """
    if weights == "checkpoint" and ckpt_path is None:
        raise ValueError(
            "benchmark needs the trained weights: pass --ckpt_path CHECKPOINT (the best.ckpt of `lightning-distill "
            "fit` with this config); for a model whose config already loads trained weights (a fine-tuned Hugging "
            "Face checkpoint), pass --weights config. Without either, the model would be measured as initialized."
        )
    if weights == "config" and ckpt_path is not None:
        raise ValueError(
            f"--weights config measures the weights the config loads, but --ckpt_path {ckpt_path} was given too; "
            "drop --weights config to measure the checkpoint, or drop --ckpt_path"
        )
    if weights not in ("checkpoint", "config"):
        raise ValueError(f"weights must be 'checkpoint' or 'config', got {weights!r}")


class _Tune:
    """The ``tune`` subcommand; its arguments come from the method's signature."""

    def tune(
        self, config: str, n_trials: int | None = None, max_epochs: int | None = None, output: str | None = None
    ) -> None:
        """Search hyperparameters with Optuna over fit runs of a base config and write the best values as a config.

        Trials are pruned on the validation metric; the study is a SQLite file, so a stopped search resumes.

        Args:
            config: Tune YAML: base_config, search_space and study settings (e.g. configs/digits/tune.yaml).
            n_trials: Finished trials the study should reach (overrides the YAML).
            max_epochs: Epochs per trial (overrides the YAML).
            output: Path of the best config (overrides the YAML).
        """
        from lightning_distill.tuning import TuneConfigError, load_tune_config, tune

        try:
            spec = load_tune_config(config, n_trials=n_trials, max_epochs=max_epochs, output=output)
        except FileNotFoundError as error:
            raise TuneConfigError(str(error)) from error
        tune(spec)


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
        super().__init__(
            pl.LightningModule,
            pl.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads a checkpoint's hyperparameters right after parsing; a file that is unsafe (pickled code)
        # or broken is refused here first, by name, rather than by an unpickling error from inside Lightning.
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if subcommand == "benchmark":
            # Before anything is built: a model without trained weights would be measured and reported as a result.
            try:
                check_benchmark_weights(ckpt_path, self.config.benchmark.weights)
            except ValueError as error:
                self._subcommand_parsers["benchmark"].error(str(error))
        if isinstance(ckpt_path, str) and Path(ckpt_path).is_file():
            load_file(ckpt_path, "ckpt_path")

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        return {
            **LightningCLI.subcommands(),
            "benchmark": {"model", "datamodule", "num_threads"},  # num_threads: the CLI's own option, default 1 here
            "tune": set(),
        }

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
    def _add_instantiators(self) -> None:
        self.parser.add_instantiator(
            _LinkTolerantInstantiator(cli=self, key="model"), pl.LightningModule, subclasses=self.subclass_mode_model
        )
        self.parser.add_instantiator(
            _LinkTolerantInstantiator(cli=self, key="data"), pl.LightningDataModule, subclasses=self.subclass_mode_data
        )

    @override
    def _add_subcommands(self, parser: LightningArgumentParser, **kwargs: Any) -> None:
        self._subcommand_parsers = {}
        parser_subcommands = parser.add_subcommands()
        for subcommand in self.subcommands():
            klass = {"benchmark": _Benchmark, "tune": _Tune}.get(subcommand, self.trainer_class)
            description = " ".join((getattr(klass, subcommand).__doc__ or "").split("\n\n")[0].split())
            subparser_kwargs = {"description": description, **kwargs.get(subcommand, {})}
            if subcommand == "tune":
                # tune builds no model, data or trainer, and its --config is a tune YAML, not a LightningCLI config
                subcommand_parser = self.parser_class(**subparser_kwargs)
                added = subcommand_parser.add_method_arguments(klass, subcommand)
                self._subcommand_method_arguments[subcommand] = added
            else:
                subcommand_parser = self._prepare_subcommand_parser(klass, subcommand, **subparser_kwargs)
            if subcommand == "benchmark":
                subcommand_parser.set_defaults(num_threads=1)  # comparable latencies across machines and reruns
            self._subcommand_parsers[subcommand] = subcommand_parser
            parser_subcommands.add_subcommand(subcommand, subcommand_parser, help=description)

    @override
    def _set_seed(self) -> None:
        if self.subcommand != "tune":  # each trial seeds itself from the base config's seed_everything
            super()._set_seed()

    @override
    def before_instantiate_classes(self) -> None:
        if self.subcommand == "tune":
            return
        config = self.config[self.subcommand] if self.subcommand else self.config
        if config.get("num_threads") is not None:
            torch.set_num_threads(config.num_threads)
        config.num_threads = torch.get_num_threads()  # the saved config.yaml records the count the run used

    @override
    def instantiate_classes(self) -> None:
        if self.subcommand != "tune":  # tune's trials build their own
            super().instantiate_classes()

    @override
    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand == "benchmark":
            kwargs = self._prepare_subcommand_kwargs(subcommand)
            _Benchmark().benchmark(**kwargs, num_threads=self.config.benchmark.num_threads)
        elif subcommand == "tune":
            self._tune(**{k: v for k, v in self.config.tune.items() if k in self._subcommand_method_arguments["tune"]})
        else:
            super()._run_subcommand(subcommand)

    def _tune(self, **kwargs: Any) -> None:
        from lightning_distill.tuning import TuneConfigError

        # The trials' in-process LightningCLIs must not see tune's own options on the command line.
        argv, sys.argv = sys.argv, sys.argv[:1]
        try:
            _Tune().tune(**kwargs)
        except TuneConfigError as error:
            self._subcommand_parsers["tune"].error(str(error))
        except KeyboardInterrupt:
            print(
                "\nsearch stopped; finished trials are kept in the study's storage: rerun the same command to resume",
                file=sys.stderr,
            )
            sys.exit(130)
        finally:
            sys.argv = argv


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


def main() -> None:
    """Entry point of the ``lightning-distill`` console script."""
    cli_main()


if __name__ == "__main__":
    main()
