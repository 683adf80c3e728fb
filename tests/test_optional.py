"""Optional features name the extra that installs their package when it is missing."""

from __future__ import annotations

import sys

import pytest
import torch

from lightning_distill.benchmark import write_report
from lightning_distill.export import OnnxExportConfig, create_session, export_onnx
from lightning_distill.models import MLP


@pytest.fixture
def without(monkeypatch: pytest.MonkeyPatch):
    """Make ``import <name>`` fail as it does where the package is not installed."""

    def hide(*names: str) -> None:
        for name in names:
            for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
                monkeypatch.delitem(sys.modules, loaded)
            monkeypatch.setitem(sys.modules, name, None)

    return hide


def test_onnx_features_name_the_onnx_extra(without, tmp_path) -> None:
    without("onnx", "onnxruntime")
    with pytest.raises(ImportError, match=r"export_onnx needs the 'onnx' package.*lightning-distill\[onnx\]"):
        export_onnx(MLP(in_features=4, hidden_sizes=[3]), OnnxExportConfig(), torch.zeros(1, 4), tmp_path / "m.onnx")
    with pytest.raises(ImportError, match=r"create_session needs the 'onnxruntime' package.*\[onnx\]"):
        create_session(tmp_path / "m.onnx")


def test_report_without_matplotlib_writes_the_tables_and_says_the_plot_is_missing(without, tmp_path) -> None:
    without("matplotlib")
    row = {"name": "a", "accuracy": 0.9, "params": 1, "size_mb": 1.0, "latency_ms_p50": 1.0, "latency_ms_mean": 1.0}
    with pytest.warns(UserWarning, match=r"report.png was not written.*lightning-distill\[plot\]"):
        write_report([row], tmp_path, title="t", reference="a")
    assert (tmp_path / "report.md").is_file() and not (tmp_path / "report.png").exists()
