"""The package on a PyTorch that no longer ships ``torch.ao.quantization``, simulated in a fresh process.

What "dropped" means here: after ``import torch``, the packages listed in ``no_torch_ao_script.DROPPED`` cannot be
imported and are gone from ``sys.modules`` and from their parents' attributes: ``torch.ao.quantization`` (eager, FX,
observers, qconfigs), the module packages built on it (``torch.ao.nn.quantized``, ``.intrinsic``, ``.qat``,
``.quantizable``, ``.sparse``), its numeric suite ``torch.ao.ns`` and the legacy aliases ``torch.quantization`` and
``torch.nn.quantized`` / ``.intrinsic`` / ``.qat`` / ``.quantizable``. Two things import them before the block and
keep what they hold: torch's own ``torch._inductor.decomposition`` (it registers the ``quantized_decomposed`` ops that
PT2E and Inductor share; a PyTorch without ``torch.ao.quantization`` would keep those ops elsewhere) and torchvision
(its quantized model zoo; torchvision releases move with torch's).

With that block the package imports (every module), distills, prunes, exports to ONNX and runs torchao's dynamic
``quantize_``; the eager and FX engines raise a ``TorchAoUnavailableError`` naming their torchao equivalent. torchao's
PT2E (static int8, QAT) imports ``torch.ao`` modules itself in torchao 0.18, so ``engine="torchao"`` static either
runs (a torchao that no longer needs them) or raises naming that.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent / "no_torch_ao_script.py"
NO_TORCH_AO = (
    r"TorchAoUnavailableError: {}\(engine='eager'\) needs torch.ao.quantization, which this PyTorch \(.+\) no longer "
    "ships: use {}"
)


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, env={**os.environ}
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULTS=")]
    assert done.returncode == 0 and lines, f"the script failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(lines[-1].removeprefix("RESULTS="))


def _ok(results: dict[str, Any], name: str) -> dict[str, Any]:
    outcome = results[name]
    assert outcome["ok"], f"{name}: {outcome.get('error')}\n{outcome.get('trace', '')}"
    return outcome


def test_the_block_makes_torch_ao_quantization_unimportable(results: dict[str, Any]) -> None:
    _ok(results, "blocked")


def test_every_module_of_the_package_imports(results: dict[str, Any]) -> None:
    _ok(results, "import_all")


def test_distillation_fit_trains_the_student(results: dict[str, Any]) -> None:
    outcome = _ok(results, "distill")
    assert outcome["steps"] == 3 and outcome["student_changed"]


def test_structured_pruning_halves_a_cnn(results: dict[str, Any]) -> None:
    outcome = _ok(results, "prune")
    assert outcome["counts"] == {"0": [8, 4], "3": [8, 4]} and outcome["out_shape"] == [2, 3]


def test_onnx_export_runs_in_onnx_runtime(results: dict[str, Any]) -> None:
    assert _ok(results, "export_onnx")["max_diff"] < 1e-5


def test_torchao_dynamic_int8_is_close_to_float_and_reloads(results: dict[str, Any]) -> None:
    outcome = _ok(results, "torchao_dynamic")
    assert outcome["relative_error"] < 0.05 and outcome["reload_same"]


def test_torchao_static_runs_or_names_what_pt2e_still_imports(results: dict[str, Any]) -> None:
    outcome = results["torchao_static"]
    if outcome["ok"]:
        assert outcome["relative_error"] < 0.05
    else:
        assert outcome["error"].startswith("TorchAoUnavailableError: StaticQuantConfig(engine='torchao') runs")
        assert "PT2E still imports torch.ao modules" in outcome["error"]
        assert "use DynamicQuantConfig(engine='torchao') or ONNX Runtime int8" in outcome["error"]


@pytest.mark.parametrize(
    ("attempt", "config", "equivalent"),
    [
        ("dynamic", "DynamicQuantConfig", r"DynamicQuantConfig\(engine='torchao'\) \(torchao quantize_"),
        ("static", "StaticQuantConfig", r"StaticQuantConfig\(engine='torchao'\) \(PT2E, X86InductorQuantizer\)"),
        ("static_cnn_fx", "StaticQuantConfig", r"StaticQuantConfig\(engine='torchao'\)"),
        ("qat", "QATConfig", r"QATConfig\(engine='torchao'\) through quantize"),
        ("ptq_callback", "StaticQuantConfig", r"StaticQuantConfig\(engine='torchao'\)"),
        ("qat_callback", "QATConfig", r"QATConfig\(engine='torchao'\)"),
    ],
)
def test_eager_and_fx_engines_name_their_torchao_equivalent(
    results: dict[str, Any], attempt: str, config: str, equivalent: str
) -> None:
    message = _ok(results, "eager_errors")["messages"][attempt]
    assert re.match(NO_TORCH_AO.format(config, equivalent), message), message
