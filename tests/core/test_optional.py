"""Optional features name the extra that installs their package when it is missing."""

from __future__ import annotations

import re
import sys

import pytest
import torch

from lightning_distill.core.benchmark import write_report
from lightning_distill.core.export import OnnxExportConfig, create_session, export_onnx
from lightning_distill.core.models import MLP
from lightning_distill.core.quantization import BitsAndBytesConfig, quantize


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


def test_tune_without_optuna_names_the_tune_extra_while_help_and_fit_work(
    without, monkeypatch: pytest.MonkeyPatch, tmp_path, capsys: pytest.CaptureFixture
) -> None:
    from conftest import ROOT

    from lightning_distill.lightning.main import main

    without("optuna")
    for loaded in [m for m in sys.modules if m.startswith("lightning_distill.lightning.tuning")]:
        monkeypatch.delitem(sys.modules, loaded)  # imported again, without optuna, when tune needs it
    with pytest.raises(SystemExit) as exit_info:
        main(["tune", "--config", str(ROOT / "configs/digits/tune.yaml")])
    assert exit_info.value.code == 2
    assert re.search(
        r"lightning-distill tune needs the 'optuna' package.*lightning-distill\[tune\]", capsys.readouterr().err
    )
    with pytest.raises(ImportError, match=r"lightning-distill\[tune\]"):
        import lightning_distill.lightning.tuning  # noqa: F401

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "tune" in capsys.readouterr().out
    teacher = str(ROOT / "configs/digits/teacher.yaml")
    short = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"]
    main(["fit", "--config", teacher, *short, "--trainer.logger=false", f"--trainer.default_root_dir={tmp_path}"])
    assert (tmp_path / "config.yaml").is_file()


def test_bitsandbytes_without_the_package_names_the_bnb_extra(without) -> None:
    without("bitsandbytes")
    with pytest.raises(ImportError, match=r"BitsAndBytesConfig .*needs the 'bitsandbytes' package.*\[bnb\]"):
        quantize(MLP(in_features=4, hidden_sizes=[3]), BitsAndBytesConfig())


def test_onnx_export_without_onnxruntime_fails_before_training(without, tmp_path) -> None:
    from conftest import tiny_trainer
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_distill.lightning.callbacks import OnnxExport
    from lightning_distill.lightning.modules import ClassifierModule

    without("onnxruntime")
    model = MLP(in_features=4, hidden_sizes=[3], num_classes=2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = DataLoader(TensorDataset(torch.randn(16, 4), torch.randint(0, 2, (16,))), batch_size=8)
    trainer = tiny_trainer(callbacks=[OnnxExport()], default_root_dir=tmp_path)
    with pytest.raises(ImportError, match=r"OnnxExport needs the 'onnxruntime' package.*\[onnx\]"):
        trainer.fit(ClassifierModule(model, learning_rate=0.5), loader, loader)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
