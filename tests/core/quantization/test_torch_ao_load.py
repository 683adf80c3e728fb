"""``_torch_ao.load`` blames only a dropped ``torch.ao`` package on PyTorch; any other ImportError stays as it is."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lightning_distill.core.quantization._torch_ao import TorchAoUnavailableError, load


def test_an_import_error_of_another_module_is_raised_as_it_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a module that imports but whose own dependency is missing: a broken install, not a PyTorch without torch.ao
    (tmp_path / "broken_quantization_backend.py").write_text("import a_dependency_that_is_not_installed\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="a_dependency_that_is_not_installed") as raised:
        load("broken_quantization_backend", "StaticQuantConfig")
    assert not isinstance(raised.value, TorchAoUnavailableError)
    assert raised.value.name == "a_dependency_that_is_not_installed"


def test_a_dropped_torch_ao_package_names_the_torchao_equivalent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch.ao.nn.qat", None)  # import of it raises ModuleNotFoundError naming it
    with pytest.raises(TorchAoUnavailableError, match=r"no longer ships: use DynamicQuantConfig\(engine='torchao'\)"):
        load("torch.ao.nn.qat", "DynamicQuantConfig")
