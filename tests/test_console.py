"""The command's console: no Lightning tips or internal deprecation warnings, user errors in a few lines, bugs and
``--debug`` with their traceback."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import ROOT

from lightning_distill.core._optional import require
from lightning_distill.core.errors import UserError
from lightning_distill.lightning._argument_errors import condense_argument_error
from lightning_distill.lightning.cli import check_ckpt_path
from lightning_distill.lightning.console import (
    _RANK_ZERO_LOGGERS,
    DEBUG_ENV,
    _HideTips,
    quiet_console,
    take_debug_flag,
    user_error_message,
    user_errors_in_brief,
)

TEACHER = str(ROOT / "configs/digits/teacher.yaml")
SHORT_FIT = [
    "--trainer.max_epochs=1",
    "--trainer.limit_train_batches=2",
    "--trainer.limit_val_batches=1",
    "--trainer.enable_progress_bar=false",
]
# A proxy nobody listens on: downloads fail at once, as offline, and nothing reaches the network.
OFFLINE = {key: "http://127.0.0.1:9" for key in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def _command(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m lightning_distill ARGS`` as a user runs it: a fresh process, no warning options of the tests."""
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONWARNINGS", DEBUG_ENV)}
    environment.update(PYTHONPATH=str(ROOT), **env)
    return subprocess.run(
        [sys.executable, "-m", "lightning_distill", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=environment,
        timeout=600,
    )


def test_the_digits_quickstart_prints_no_tip_and_no_deprecation_warning(tmp_path: Path) -> None:
    run = _command(["fit", "--config", TEACHER, *SHORT_FIT], cwd=tmp_path)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Tip" not in output and "litlogger" not in output and "litmodels" not in output, output
    assert "deprecat" not in output.lower() and "FutureWarning" not in output, output
    assert "GPU available: " in output  # the device summary is kept: it says where the run goes
    assert (tmp_path / "runs/digits/teacher/checkpoints/best.ckpt").is_file()


def _user_error_cases(tmp_path: Path) -> dict[str, tuple[list[str], dict[str, str], list[str]]]:
    """name -> (arguments, environment, words the message must hold)."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints/best.ckpt").write_bytes(b"")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model:\n  init_args:\n    learning_rate: fast\n")
    return {
        "unknown class name": (
            ["fit", "--config", TEACHER, "--model", "NoSuchModule"],
            {},
            ["--model", "'NoSuchModule'", "ClassifierModule", "DistillationModule"],
        ),
        "missing --ckpt_path file": (
            ["test", "--config", TEACHER, "--ckpt_path", "checkpoints/missing.ckpt"],
            {},
            ["--ckpt_path checkpoints/missing.ckpt does not exist", "checkpoints/best.ckpt"],
        ),
        "--ckpt_path a folder": (
            ["test", "--config", TEACHER, "--ckpt_path", "checkpoints"],
            {},
            ["--ckpt_path checkpoints is a folder; pass a .ckpt file", "checkpoints/best.ckpt"],
        ),
        "MNIST offline without --data.root": (
            ["fit", "--config", str(ROOT / "configs/mnist/teacher.yaml")],
            OFFLINE,
            ["could not download MNIST", "Connection refused", "--data.root", "--data.download false"],
        ),
        "bad YAML value": (
            ["fit", "--config", TEACHER, "--config", str(bad_yaml)],
            {},
            ["--model.learning_rate: expected float", "fast"],
        ),
        "value a class refuses": (
            ["fit", "--config", TEACHER, "--data.batch_size", "0"],
            {},
            ["DigitsDataModule", "batch_size must be positive, got 0"],
        ),
    }


USER_ERRORS = (
    "unknown class name",
    "missing --ckpt_path file",
    "--ckpt_path a folder",
    "MNIST offline without --data.root",
    "bad YAML value",
    "value a class refuses",
)


@pytest.mark.parametrize("case", USER_ERRORS)
def test_a_user_error_is_a_short_message_without_traceback(case: str, tmp_path: Path) -> None:
    args, env, words = _user_error_cases(tmp_path)[case]
    run = _command(args, cwd=tmp_path, **env)
    output = run.stdout + run.stderr
    lines = [line for line in output.splitlines() if line.strip()]
    assert run.returncode == 2, output[-3000:]
    assert "Traceback" not in output and len(lines) <= 5, output[-3000:]
    message = " ".join(line for line in lines if line.startswith("lightning-distill "))
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "--debug" in output and DEBUG_ENV in output


def test_debug_flag_shows_the_traceback(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    run = _command(["test", "--config", TEACHER, "--ckpt_path", "checkpoints", "--debug"], cwd=tmp_path)
    assert "Traceback (most recent call last)" in run.stderr and "is a folder" in run.stderr
    assert run.returncode != 0


def test_debug_environment_variable_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(FileNotFoundError, match=r"x\.ckpt does not exist"):
        with user_errors_in_brief("lightning-distill test"):
            raise FileNotFoundError("--ckpt_path x.ckpt does not exist")


def test_a_bug_keeps_its_traceback(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ZeroDivisionError):
        with user_errors_in_brief("lightning-distill fit"):
            _ = 1 / 0
    for bug in (RuntimeError("x"), KeyError("x"), TypeError("x"), ValueError("x"), ImportError("no module x")):
        assert user_error_message(bug) is None, bug
    with pytest.raises(SystemExit) as exit_info:
        with user_errors_in_brief("lightning-distill test"):
            raise FileNotFoundError("--ckpt_path x.ckpt does not exist")
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("lightning-distill test: FileNotFoundError: --ckpt_path x.ckpt does not exist\n")


def test_a_missing_extra_is_a_user_error() -> None:
    with pytest.raises(ImportError) as error:
        require("no_such_package_of_lightning_distill", "lightning-distill something")
    assert isinstance(error.value, UserError)
    assert "[all]" in (user_error_message(error.value) or "")


def test_ckpt_path_checks(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=r"is a folder; pass a .ckpt file \(.* holds none"):
        check_ckpt_path(str(tmp_path))
    for index in range(7):
        (tmp_path / "run" / "checkpoints").mkdir(parents=True, exist_ok=True)
        (tmp_path / "run" / "checkpoints" / f"epoch={index}.ckpt").write_bytes(b"")
    with pytest.raises(IsADirectoryError, match=r"such as .*epoch=0.ckpt, .*epoch=4.ckpt and 2 more$"):
        check_ckpt_path(str(tmp_path / "run"))
    with pytest.raises(FileNotFoundError, match=r"missing.ckpt does not exist; pass a .ckpt file, such as .*epoch=0"):
        check_ckpt_path(str(tmp_path / "run" / "checkpoints" / "missing.ckpt"))
    for lightning_value in (None, "last", "best", "hpc", "registry", "registry:model:v1", "s3://bucket/best.ckpt"):
        check_ckpt_path(lightning_value)


def test_argument_errors_name_the_option_and_the_problem() -> None:
    nested = """Parser key "model":
  Does not validate against any of the Union subtypes
  Subtypes: [<class 'lightning.pytorch.core.module.LightningModule'>, <class 'NoneType'>]
  Errors:
    - Problem with given class_path 'lightning_distill.lightning.modules.DistillationModule':
        Parser key "loss":
          Errors:
            - Problem with given class_path 'lightning_distill.core.losses.KDLoss':
                Parser key "temperature":
                  Expected a <class 'float'>. Got value: hot
            - Expected a <class 'NoneType'>
    - Expected a <class 'NoneType'>
  Given value type: <class 'jsonargparse._util.NestedArg'>
  Given value: NestedArg(key='loss.init_args.temperature', val='hot')"""
    assert condense_argument_error(nested) == "--model.loss.temperature: expected float. Got value: hot"
    assert condense_argument_error("unrecognized arguments: fitt") == "unrecognized arguments: fitt"


LIBRARY_MODULE = "lightning_distill.x"


def test_quiet_console_hides_library_deprecations_and_tips_only() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        try:
            quiet_console()
            for module in ("torch.utils._pytree", "lightning.pytorch.trainer", "my_project.models", LIBRARY_MODULE):
                for category in (DeprecationWarning, FutureWarning, UserWarning):
                    warnings.warn_explicit(f"{module} {category.__name__}", category, "file.py", 1, module=module)
            record = logging.LogRecord("lightning", logging.INFO, "f.py", 1, "💡 Tip: install litlogger", (), None)
            assert not _HideTips().filter(record)
            record.msg = "GPU available: False, used: False"
            assert _HideTips().filter(record)
        finally:
            for name in _RANK_ZERO_LOGGERS:
                logger = logging.getLogger(name)
                for hide in [f for f in logger.filters if isinstance(f, _HideTips)]:
                    logger.removeFilter(hide)
    shown = sorted(str(w.message) for w in caught)
    expected = [f"{m} {c}" for m in ("lightning_distill.x", "my_project.models") for c in ("Deprecation", "Future")]
    assert shown == sorted(
        [f"{m}Warning" for m in expected]
        + [f"{m} UserWarning" for m in ("torch.utils._pytree", "lightning.pytorch.trainer", "my_project.models")]
        + ["lightning_distill.x UserWarning"]
    )


def test_take_debug_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    assert take_debug_flag(["fit", "--config", "c.yaml"]) == ["fit", "--config", "c.yaml"]
    assert DEBUG_ENV not in os.environ
    assert take_debug_flag(["fit", "--debug", "--config", "c.yaml"]) == ["fit", "--config", "c.yaml"]
    assert os.environ[DEBUG_ENV] == "1"
