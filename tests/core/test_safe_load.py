"""No file a user hands us is unpickled: a checkpoint carrying code is refused and its payload never runs."""

from __future__ import annotations

import builtins
import os
import pickle
import random
import re
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import ROOT

from lightning_distill.core.models import MLP
from lightning_distill.core.quantization import load_quantized
from lightning_distill.core.safe_load import UnsafeFileError, load_file, refused_globals
from lightning_distill.lightning.cli import cli_main
from lightning_distill.lightning.modules import DistillationModule
from lightning_distill.recipes.engine import load_trained


class _Payload:
    """Pickles as a call of ``os.system`` that creates ``marker``: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _malicious(tmp_path: Path, extra: dict | None = None) -> tuple[Path, Path]:
    """A checkpoint that loads like a real one, plus a payload; returns its path and the payload's marker."""
    marker = tmp_path / "payload-ran"
    model = MLP(in_features=64, hidden_sizes=[8], num_classes=10)
    payload = {
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
        "hyper_parameters": _Payload(marker),
        **(extra or {}),
    }
    path = tmp_path / "evil.ckpt"
    torch.save(payload, path)
    return path, marker


def test_load_file_refuses_pickled_code_and_names_it(tmp_path: Path) -> None:
    path, marker = _malicious(tmp_path)
    with pytest.raises(UnsafeFileError, match=r"evil\.ckpt.*posix\.system.*never unpickles"):
        load_file(path)
    assert not marker.exists()


def test_teacher_checkpoint_with_code_is_refused_before_training(tmp_path: Path) -> None:
    path, marker = _malicious(tmp_path)
    teacher = MLP(in_features=64, hidden_sizes=[8], num_classes=10)
    with pytest.raises(UnsafeFileError, match="teacher_checkpoint"):
        DistillationModule(student=MLP(in_features=64, hidden_sizes=[4]), teacher=teacher, teacher_checkpoint=str(path))
    assert not marker.exists()


def test_quantized_file_with_code_is_refused(tmp_path: Path) -> None:
    path, marker = _malicious(tmp_path, {"format": "lightning-distill/quantized", "version": 1})
    with pytest.raises(UnsafeFileError, match="quantized model"):
        load_quantized(path, MLP(in_features=64, hidden_sizes=[8]))
    assert not marker.exists()


def test_benchmark_and_recipe_loads_refuse_code(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, marker = _malicious(tmp_path)
    monkeypatch.chdir(ROOT)
    config = "configs/digits/teacher.yaml"
    args = ["benchmark", "--config", config, "--ckpt_path", str(path), "--output", str(tmp_path / "b.json")]
    with pytest.raises(UnsafeFileError, match="ckpt_path"):
        cli_main(args)
    with pytest.raises(UnsafeFileError):
        load_trained(ROOT / config, path)
    assert not marker.exists()


def test_lightning_distill_fit_does_not_run_a_teachers_payload(tmp_path: Path) -> None:
    """The report's case, end to end in a fresh process: ``lightning-distill fit`` with a booby-trapped teacher."""
    import subprocess
    import sys

    path, marker = _malicious(tmp_path)
    command = [
        sys.executable,
        "-m",
        "lightning_distill",
        "fit",
        "--config",
        str(ROOT / "configs/digits/distill.yaml"),
        f"--model.init_args.teacher_checkpoint={path}",
        "--trainer.max_epochs=1",
        "--trainer.logger=false",
        f"--trainer.default_root_dir={tmp_path}",
    ]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "UnsafeFileError" in done.stderr and "posix.system" in done.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "is empty"),
        ("truncated", "not a readable PyTorch file"),
    ],
)
def test_broken_files_name_the_cause(tmp_path: Path, content: bytes | str, match: str) -> None:
    path = tmp_path / "broken.ckpt"
    if content == "truncated":
        torch.save({"state_dict": {"w": torch.ones(100)}}, path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(ValueError, match=rf"teacher_checkpoint .*broken\.ckpt.*{match}"):
        load_file(path, "teacher_checkpoint")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_random_bytes_are_unreadable_not_a_crash(tmp_path: Path) -> None:
    """Random bytes make the unpickler raise IndexError, KeyError, ... (7% of seeds): all read as unreadable."""
    path = tmp_path / "broken.ckpt"
    for seed in range(400):
        path.write_bytes(random.Random(seed).randbytes(2000))
        with pytest.raises(ValueError, match=r"teacher_checkpoint .*broken\.ckpt.*not a readable PyTorch file"):
            load_file(path, "teacher_checkpoint")


def test_every_artifact_of_a_fit_loads_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cli_main(
        [
            "fit",
            "--config",
            str(ROOT / "configs/digits/teacher.yaml"),
            "--trainer.max_epochs=1",
            "--trainer.logger=false",
            "--trainer.enable_progress_bar=false",
        ]
    )
    checkpoints = list((tmp_path / "runs").rglob("*.ckpt"))
    assert checkpoints
    for checkpoint in checkpoints:
        assert "state_dict" in load_file(checkpoint)


class _NoPython2Names(pickle.Pickler):
    """Pickles globals under their own module names (protocol 2 would write ``subprocess.call`` as ``commands``)."""

    def __init__(self, file: Any, protocol: int) -> None:
        super().__init__(file, protocol, fix_imports=False)


class _Call:
    """Pickles as a call of ``function`` with ``args``: a crafted file that would run it when unpickled."""

    def __init__(self, function: Any, args: tuple) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return (self.function, self.args)


_CRAFTED = {
    "subprocess.call": (subprocess.call, (["touch", "{marker}"],)),
    "builtins.exec": (builtins.exec, ("open({marker!r}, 'w').close()",)),
    "posix.system": (os.system, ("touch {marker}",)),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("name", list(_CRAFTED))
def test_a_crafted_pickle_of_any_global_is_refused_by_name(tmp_path: Path, name: str, legacy: bool) -> None:
    """Torch words each refusal differently (blocked module; ``Unsupported global: GLOBAL exec`` without ``builtins``);
    every one is refused as unsafe, with the global's full name, in the zip and the legacy format."""
    marker = tmp_path / "payload-ran"
    function, args = _CRAFTED[name]
    args = tuple(
        a.format(marker=str(marker)) if isinstance(a, str) else [x.format(marker=marker) for x in a] for a in args
    )
    path = tmp_path / "crafted.pt"
    module = types.SimpleNamespace(__name__="pickle", Pickler=_NoPython2Names, dump=pickle.dump)
    torch.save(
        {"w": torch.ones(2), "x": _Call(function, args)},
        path,
        pickle_module=module,
        _use_new_zipfile_serialization=not legacy,
    )
    with pytest.raises(UnsafeFileError, match=rf"crafted\.pt' asks to unpickle {re.escape(name)}, ") as caught:
        load_file(path)
    assert caught.value.refused == (name,)
    assert not marker.exists()


_WORDINGS = {
    "blocked module": "Weights only load failed. \n\nTrying to load unsupported GLOBAL {full} whose module {module} is "
    "blocked.\n\nCheck the documentation of torch.load",
    "unsupported global": "Weights only load failed. This file can still be loaded, to do so you have two options\n\t"
    "WeightsUnpickler error: Unsupported global: GLOBAL {printed} was not an allowed global by default. Please use "
    "`torch.serialization.add_safe_globals([{printed}])` or the `torch.serialization.safe_globals([{printed}])` "
    "context manager to allowlist this global if you trust this class/function.",
    "bare opcode": "WeightsUnpickler error: GLOBAL {full} is not allowed",
}


@pytest.mark.parametrize("wording", list(_WORDINGS))
@pytest.mark.parametrize("name", list(_CRAFTED))
def test_every_wording_of_a_refusal_names_the_global(name: str, wording: str) -> None:
    """What torch prints: the full name where the module is blocked, the name without ``builtins.`` otherwise."""
    module = name.split(".")[0]
    printed = name.removeprefix("builtins.")
    message = _WORDINGS[wording].format(full=name, module=module, printed=printed)
    assert refused_globals(message) == (name,)


def test_a_corrupted_file_names_no_global() -> None:
    assert refused_globals("Weights only load failed.\n\nWeightsUnpickler error: Unsupported operand 149") == ()
