"""Every YAML under configs/ goes through the CLI, so a stale config fails CI.

Each config is parsed and validated (class paths, argument names and types). Configs that need nothing from the
network are also instantiated: models, data modules, losses and callbacks are built for real. Checkpoints that a
previous step writes (``teacher_checkpoint``, a student's ``teacher_weights``) are set to null, since no step has run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import MNIST10K, ROOT

from lightning_distill.lightning.cli import DistillCLI

# Tune and compress specs (top-level search_space) are not LightningCLI configs; test_tune.py and
# tests/lightning/compress check them.
CONFIGS = sorted(
    p for p in (ROOT / "configs").rglob("*.yaml") if "search_space" not in (yaml.safe_load(p.read_text()) or {})
)
# Configs whose models or data come from the Hugging Face Hub can only be parsed here.
ONLINE = {p for p in CONFIGS if "clinc" in p.parts and "offline" not in p.parts}


class _ParseOnlyCLI(DistillCLI):
    def instantiate_classes(self) -> None:
        pass


def _overrides(config: Path) -> list[str]:
    text = yaml.safe_load(config.read_text())
    args = []
    init_args = (text.get("model") or {}).get("init_args") or {}
    if init_args.get("teacher_checkpoint"):
        args.append("--model.init_args.teacher_checkpoint=null")
    student = init_args.get("student") or {}
    if (student.get("init_args") or {}).get("teacher_weights"):
        # the whole student as JSON: a nested `...student.init_args.teacher_weights=null` arrives as the string 'None'
        student = {**student, "init_args": {**student["init_args"], "teacher_weights": None}}
        args.append(f"--model.init_args.student={json.dumps(student)}")
    data_class = (text.get("data") or {}).get("class_path", "")
    if data_class.endswith("MNISTDataModule"):
        args += [f"--data.init_args.root={MNIST10K}", "--data.init_args.download=false"]
    return args


def test_there_are_configs() -> None:
    assert {"digits", "mnist"} <= {p.parent.name for p in CONFIGS}


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_parses(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    assert config.read_text().startswith("#"), "each config starts with a comment saying what it does and how to run it"
    _ParseOnlyCLI(args=["--config", str(config), *_overrides(config)], run=False)


@pytest.mark.parametrize("config", sorted(set(CONFIGS) - ONLINE), ids=lambda p: str(p.relative_to(ROOT / "configs")))
def test_config_instantiates(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cli = DistillCLI(args=["--config", str(config), *_overrides(config)], run=False)
    assert cli.model is not None and cli.datamodule is not None and cli.trainer is not None
