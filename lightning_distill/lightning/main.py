"""The ``lightning-distill`` command (and ``python -m lightning_distill``): ``DistillCLI`` plus ``tune`` and
``compress``.

``fit``, ``validate``, ``test``, ``predict``, ``benchmark`` and ``export`` are
:class:`~lightning_distill.lightning.cli.DistillCLI`'s.
``tune`` and ``compress`` build no model, data or trainer and their ``--config`` is a search YAML, so they are no
LightningCLI runs: the command's parser lists them beside the others (``--help``), and :func:`main` hands
``tune ...`` to :func:`tune_main` and ``compress ...`` to :func:`compress_main`.
Dependencies run one way: this module imports ``cli``, ``tuning`` and ``compress``; they run their trials through
``cli``.
"""

from __future__ import annotations

import sys
from typing import Any

from jsonargparse import ArgumentParser
from lightning.pytorch.cli import LightningArgumentParser
from typing_extensions import override

from lightning_distill.core._optional import require
from lightning_distill.lightning.cli import DistillCLI
from lightning_distill.lightning.console import (
    DEBUG_ENV,
    DEBUG_FLAG,
    quiet_console,
    take_debug_flag,
    user_errors_in_brief,
)

__all__ = [
    "LightningDistillCLI",
    "compress_command",
    "compress_main",
    "compress_parser",
    "main",
    "tune_command",
    "tune_main",
    "tune_parser",
]

PROG = "lightning-distill"


def tune_command(
    config: str, n_trials: int | None = None, max_epochs: int | None = None, output: str | None = None
) -> None:
    """Search hyperparameters with Optuna over fit runs of a base config and write the best values as a config.

    Trials are pruned on the validation metric; the study is a SQLite file, so a stopped search resumes.

    Args:
        config: Tune YAML: base_config, search_space and study settings (e.g. configs/digits/tune.yaml).
        n_trials: Finished trials the study should reach (overrides the YAML).
        max_epochs: Epochs per trial (overrides the YAML).
        output: Path of the best config (overrides the YAML).

    Raises:
        ImportError: Optuna is not installed (the message names the ``[tune]`` extra).
        TuneConfigError: The tune YAML or its base config is wrong (before any trial runs).
    """
    require("optuna", f"{PROG} tune")
    from lightning_distill.lightning.tuning import TuneConfigError, load_tune_config, tune

    try:
        spec = load_tune_config(config, n_trials=n_trials, max_epochs=max_epochs, output=output)
    except FileNotFoundError as error:
        raise TuneConfigError(str(error)) from error
    tune(spec)


def compress_command(
    config: str,
    n_trials: int | None = None,
    timeout_s: float | None = None,
    output_dir: str | None = None,
    max_epochs: int | None = None,
    limit_train_batches: int | None = None,
) -> None:
    """Search distilled, exported students for the best one under a latency, size and accuracy budget.

    Writes the Pareto front (front.json, front.md, front.png) and the chosen artifact; the study is a SQLite file in
    the output folder, so a stopped search resumes.

    Args:
        config: Compress YAML: teacher, data, family, search_space, budget, trials (e.g. configs/digits/compress.yaml).
        n_trials: Completed trials the study should reach (overrides trials.n_trials).
        timeout_s: Seconds this run may start trials for (overrides trials.timeout_s).
        output_dir: Output folder (overrides output_dir).
        max_epochs: Epochs of each student's fit (overrides max_epochs).
        limit_train_batches: Training batches per epoch of each student's fit, for a smoke run (overrides
            limit_train_batches).

    Raises:
        ImportError: Optuna is not installed (the message names the ``[tune]`` extra).
        CompressConfigError: The compress YAML, its teacher config or its search space is wrong (before any training).
    """
    require("optuna", f"{PROG} compress")
    from lightning_distill.lightning.compress import compress, load_compress_config

    compress(
        load_compress_config(
            config,
            n_trials=n_trials,
            timeout_s=timeout_s,
            output_dir=output_dir,
            max_epochs=max_epochs,
            limit_train_batches=limit_train_batches,
        )
    )


def _description(command: Any = None) -> str:
    return " ".join(((command or tune_command).__doc__ or "").split("\n\n")[0].split())


def tune_parser(prog: str = f"{PROG} tune") -> ArgumentParser:
    """The parser of ``lightning-distill tune``: :func:`tune_command`'s arguments, with its docstring as help."""
    parser = ArgumentParser(prog=prog, description=_description())
    parser.add_function_arguments(tune_command)
    return parser


def compress_parser(prog: str = f"{PROG} compress") -> ArgumentParser:
    """The parser of ``lightning-distill compress``: :func:`compress_command`'s arguments and docstring."""
    parser = ArgumentParser(prog=prog, description=_description(compress_command))
    parser.add_function_arguments(compress_command)
    return parser


def tune_main(argv: list[str]) -> None:
    """Run ``lightning-distill tune ARGV``: errors in the arguments, the tune YAML or a missing Optuna print a usage
    error (exit code 2); Ctrl+C stops the search, whose finished trials the same command resumes (exit code 130).
    """
    _search_main("tune", tune_parser(), tune_command, argv)


def compress_main(argv: list[str]) -> None:
    """Run ``lightning-distill compress ARGV``, as :func:`tune_main` runs ``tune``."""
    _search_main("compress", compress_parser(), compress_command, argv)


def _search_main(verb: str, parser: ArgumentParser, command: Any, argv: list[str]) -> None:
    values = parser.parse_args(argv)
    try:
        require("optuna", f"{PROG} {verb}")  # before the search packages, which import it, are loaded
    except ImportError as error:
        parser.error(str(error))
    from lightning_distill.lightning.compress import CompressConfigError
    from lightning_distill.lightning.tuning import TuneConfigError

    # The trials' in-process LightningCLIs must not see the verb's own options on the command line.
    script_argv, sys.argv = sys.argv, sys.argv[:1]
    try:
        command(**values.as_dict())
    except (TuneConfigError, CompressConfigError) as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        print(
            "\nsearch stopped; finished trials are kept in the study's storage: rerun the same command to resume",
            file=sys.stderr,
        )
        sys.exit(130)
    finally:
        sys.argv = script_argv


class _ParserWithTune(LightningArgumentParser):
    """LightningCLI's parser whose subcommands include ``tune``, so ``--help`` lists it beside the others."""

    @override
    def add_subcommands(self, *args: Any, **kwargs: Any) -> Any:
        subcommands = super().add_subcommands(*args, **kwargs)
        subcommands.add_subcommand("tune", tune_parser(), help=_description())
        subcommands.add_subcommand("compress", compress_parser(), help=_description(compress_command))
        return subcommands


class LightningDistillCLI(DistillCLI):
    """:class:`~lightning_distill.lightning.cli.DistillCLI` whose subcommands include ``tune`` (see the module
    docstring)."""

    def __init__(self, args: list[str] | None = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault("parser_class", _ParserWithTune)
        kwargs.setdefault("parser_kwargs", {"prog": PROG})  # `python -m lightning_distill` would say __main__.py
        super().__init__(args=args, run=run, **kwargs)

    @override
    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        super().parse_arguments(parser, args)
        verb = self.config.get("subcommand")
        if verb in ("tune", "compress"):  # main() runs `tune ...` itself; options before it are no part
            parser.error(f"{verb} takes its options after it: {PROG} {verb} --config {verb.upper()}.yaml ...")


def main(args: list[str] | None = None) -> None:
    """Entry point of ``lightning-distill`` and ``python -m lightning_distill``; ``args`` as on the command line
    (None reads ``sys.argv``).

    Lightning's tips and libraries' internal deprecation warnings are left out, and a user error (an unknown class or
    option, a bad value, a missing file or download) is printed as one message without a traceback, exit code 2;
    ``--debug`` (anywhere on the command line) or ``LIGHTNING_DISTILL_DEBUG=1`` shows all of it
    (:mod:`lightning_distill.lightning.console`).
    """
    argv = take_debug_flag(sys.argv[1:] if args is None else list(args))
    if args is None:  # DDP starts its workers with sys.argv; the environment tells them to debug
        sys.argv[1:] = argv
    quiet_console()  # Lightning, imported with this module, puts its own warnings filter first: come before it
    with user_errors_in_brief(_command(argv)):
        if argv[:1] == ["tune"]:
            tune_main(argv[1:])
            return
        if argv[:1] == ["compress"]:
            compress_main(argv[1:])
            return
        parser_kwargs = {"prog": PROG, "exit_on_error": False, "description": _DESCRIPTION}
        if args is None:
            LightningDistillCLI(parser_kwargs=parser_kwargs)
            return
        script_argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it gets args and a command line both
        try:
            LightningDistillCLI(args=argv, parser_kwargs=parser_kwargs)
        finally:
            sys.argv = script_argv


_DESCRIPTION = (
    "Knowledge distillation, pruning, quantization and ONNX export with PyTorch Lightning. A mistake in the command "
    f"(an unknown class or option, a bad value, a missing file) is told in one message: {DEBUG_FLAG} or {DEBUG_ENV}=1 "
    "shows its traceback, and Lightning's tips and deprecation warnings."
)


def _command(argv: list[str]) -> str:
    """``lightning-distill SUBCOMMAND`` as typed, for messages; ``lightning-distill`` before a subcommand is known."""
    subcommand = next((arg for arg in argv if arg in _SUBCOMMANDS), None)
    return f"{PROG} {subcommand}" if subcommand else PROG


_SUBCOMMANDS = ("fit", "validate", "test", "predict", "benchmark", "export", "tune", "compress")
