"""The ``lightning-distill`` command: LightningCLI with ``fit``/``validate``/``test``/``predict`` and ``benchmark``.

Models, data modules, losses and callbacks are chosen in YAML with ``class_path``/``init_args``. Values that belong to
the data (``num_classes``, ``in_features``, ``id2label``) are written once, on the data module, and linked into the
LightningModule and into the models it holds (``model``, ``student``, ``teacher``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, _InstantiatorFn
from torch import nn
from typing_extensions import override

from lightning_distill.benchmark import benchmark_module, markdown_table, write_rows
from lightning_distill.pruning import resize_to_state_dict
from lightning_distill.safe_load import load_file

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
    ) -> None:
        """Measure accuracy, parameters, size on disk, batch-1 latency and throughput of a trained model.

        Args:
            model: The LightningModule of the config; its ``student`` (distillation) or ``model`` is measured.
            datamodule: The data module whose ``split`` is measured.
            ckpt_path: Checkpoint to load into the LightningModule before measuring.
            name: Row name in the report.
            output: JSON file of benchmark rows; a row with the same name is replaced, others are kept.
            split: Data split to measure accuracy on.
            num_threads: PyTorch intra-op threads during the measurement.
            warmup: Untimed calls before the latency measurement.
            iterations: Timed batch-1 calls.
        """
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
        rows = write_rows([row], output)
        print(markdown_table(rows))
        print(f"wrote {len(rows)} rows to {output}")


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
        if isinstance(ckpt_path, str) and Path(ckpt_path).is_file():
            load_file(ckpt_path, "ckpt_path")

    @staticmethod
    @override
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "benchmark": {"model", "datamodule"}}

    @override
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
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
            klass = _Benchmark if subcommand == "benchmark" else self.trainer_class
            description = (getattr(klass, subcommand).__doc__ or "").strip().splitlines()[0]
            subparser_kwargs = {"description": description, **kwargs.get(subcommand, {})}
            subcommand_parser = self._prepare_subcommand_parser(klass, subcommand, **subparser_kwargs)
            self._subcommand_parsers[subcommand] = subcommand_parser
            parser_subcommands.add_subcommand(subcommand, subcommand_parser, help=description)

    @override
    def _run_subcommand(self, subcommand: str) -> None:
        if subcommand != "benchmark":
            super()._run_subcommand(subcommand)
            return
        _Benchmark().benchmark(**self._prepare_subcommand_kwargs(subcommand))


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
    """Entry point of the ``lightning-distill`` console script.

    ``lightning-distill tune --config TUNE.yaml`` runs an Optuna search (:mod:`lightning_distill.tuning`); every other
    subcommand goes to the LightningCLI.
    """
    if sys.argv[1:2] == ["tune"]:
        from lightning_distill.tuning import tune_main

        argv, sys.argv = sys.argv[2:], sys.argv[:1]  # the trials' in-process LightningCLI must not see tune's options
        tune_main(argv)
        return
    cli_main()


if __name__ == "__main__":
    main()
