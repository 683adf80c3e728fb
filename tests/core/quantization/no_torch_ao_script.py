"""Run by test_without_torch_ao.py in a fresh process: drop torch.ao.quantization, then use the package; print JSON.

``drop_torch_ao`` must run before anything else imports the package (see the test's docstring for what "dropped"
means). Each check records what happened instead of raising, so the test reports every failure at once.
"""

from __future__ import annotations

import importlib
import importlib.abc
import json
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

DROPPED = (
    "torch.ao.quantization",
    "torch.ao.nn.quantized",
    "torch.ao.nn.intrinsic",
    "torch.ao.nn.qat",
    "torch.ao.nn.quantizable",
    "torch.ao.nn.sparse",
    "torch.ao.ns",
    "torch.quantization",
    "torch.nn.quantized",
    "torch.nn.intrinsic",
    "torch.nn.qat",
    "torch.nn.quantizable",
)


def _dropped(name: str) -> bool:
    return any(name == d or name.startswith(d + ".") for d in DROPPED)


class _Dropped(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if _dropped(name):
            raise ModuleNotFoundError(f"No module named {name!r} (dropped from this PyTorch)", name=name)
        return None


def drop_torch_ao() -> None:
    """Make every package of ``DROPPED`` unimportable, after importing torch (which imports some of them itself)."""
    import torch
    import torch._inductor.decomposition  # torch's own: imports torch.ao.quantization.fx._decomposed

    try:
        import torchvision  # noqa: F401  (its quantized model zoo imports torch.ao.quantization)
    except ImportError:
        pass
    sys.meta_path.insert(0, _Dropped())
    for name in [m for m in sys.modules if _dropped(m)]:
        del sys.modules[name]
    for name in DROPPED:
        parent, _, attribute = name.rpartition(".")
        if parent in sys.modules and attribute in vars(sys.modules[parent]):
            delattr(sys.modules[parent], attribute)
    assert "quantization" not in vars(torch.ao)  # its lazy __getattr__ now raises ModuleNotFoundError


RESULTS: dict[str, Any] = {}


def check(name: str) -> Callable[[Callable[[], Any]], Callable[[], Any]]:
    def record(function: Callable[[], Any]) -> Callable[[], Any]:
        try:
            RESULTS[name] = {"ok": True, **(function() or {})}
        except Exception as error:  # recorded for the test to report
            RESULTS[name] = {"ok": False, "error": f"{type(error).__name__}: {error}", "trace": traceback.format_exc()}
        return function

    return record


def main() -> None:
    drop_torch_ao()
    import torch
    from torch import nn

    torch.manual_seed(0)

    @check("blocked")
    def _blocked() -> dict[str, Any]:
        try:
            importlib.import_module("torch.ao.quantization")
        except ModuleNotFoundError:
            return {}
        raise AssertionError("torch.ao.quantization still imports")

    @check("import_all")
    def _import_all() -> dict[str, Any]:
        import pkgutil

        import lightning_distill

        failed = {}
        for info in pkgutil.walk_packages(lightning_distill.__path__, "lightning_distill."):
            try:
                importlib.import_module(info.name)
            except Exception as error:
                failed[info.name] = f"{type(error).__name__}: {error}"
        if failed:
            raise AssertionError(f"modules that do not import: {failed}")
        return {}

    @check("distill")
    def _distill() -> dict[str, Any]:
        import lightning.pytorch as pl

        from lightning_distill.core.models import MLP
        from lightning_distill.lightning.data import DigitsDataModule
        from lightning_distill.lightning.modules import DistillationModule

        student = MLP(num_classes=10, in_features=64, hidden_sizes=[8])
        module = DistillationModule(student, MLP(num_classes=10, in_features=64, hidden_sizes=[16]), num_classes=10)
        before = [p.detach().clone() for p in student.parameters()]
        trainer = pl.Trainer(
            accelerator="cpu", max_steps=3, limit_val_batches=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False,
        )  # fmt: skip
        trainer.fit(module, DigitsDataModule())
        changed = any(not torch.equal(a, b) for a, b in zip(before, student.parameters(), strict=True))
        return {"steps": trainer.global_step, "student_changed": changed}

    @check("prune")
    def _prune() -> dict[str, Any]:
        from lightning_distill.core.pruning import prune_structured

        model = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3),
        ).eval()  # fmt: skip
        counts = prune_structured(model, 0.5, example_inputs=torch.randn(1, 1, 8, 8))
        out = model(torch.randn(2, 1, 8, 8))
        return {"counts": {k: list(v) for k, v in counts.items()}, "out_shape": list(out.shape)}

    @check("export_onnx")
    def _export() -> dict[str, Any]:
        import numpy as np
        import onnxruntime as ort

        from lightning_distill.core.export import OnnxExportConfig, export_onnx

        model = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3)).eval()
        x = torch.randn(4, 16)
        with tempfile.TemporaryDirectory() as folder:
            path = export_onnx(model, OnnxExportConfig(), x, Path(folder) / "mlp.onnx")
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            (ort_out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
        return {"max_diff": float(np.abs(ort_out - model(x).detach().numpy()).max())}

    mlp = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4)).eval()
    data = [torch.randn(8, 16) for _ in range(4)]

    def relative_error(quantized: nn.Module) -> float:
        x = torch.cat(data)
        with torch.no_grad():
            reference = mlp(x)
            return float((quantized(x) - reference).norm() / reference.norm())

    @check("torchao_dynamic")
    def _dynamic() -> dict[str, Any]:
        from lightning_distill.core.quantization import DynamicQuantConfig, load_quantized, quantize, save_quantized

        quantized = quantize(mlp, DynamicQuantConfig(engine="torchao"))
        with tempfile.TemporaryDirectory() as folder:
            reloaded = load_quantized(save_quantized(quantized, Path(folder) / "q.pt"), mlp)
            with torch.no_grad():
                same = torch.equal(reloaded(data[0]), quantized(data[0]))
        return {"relative_error": relative_error(quantized), "reload_same": same}

    @check("torchao_static")
    def _static() -> dict[str, Any]:
        from lightning_distill.core.quantization import StaticQuantConfig, quantize

        return {"relative_error": relative_error(quantize(mlp, StaticQuantConfig(engine="torchao"), data))}

    @check("eager_errors")
    def _eager_errors() -> dict[str, Any]:
        from lightning_distill.core.quantization import DynamicQuantConfig, QATConfig, StaticQuantConfig, quantize
        from lightning_distill.lightning.callbacks import PostTrainingQuantization, QuantizationAwareTraining

        messages = {}
        attempts: dict[str, Callable[[], Any]] = {
            "dynamic": lambda: quantize(mlp, DynamicQuantConfig()),
            "static": lambda: quantize(mlp, StaticQuantConfig(), data),
            "qat": lambda: quantize(mlp, QATConfig()),
            "static_cnn_fx": lambda: quantize(nn.Sequential(nn.Conv2d(1, 2, 3)), StaticQuantConfig(), [data[0]]),
            "ptq_callback": lambda: PostTrainingQuantization(StaticQuantConfig()),
            "qat_callback": lambda: QuantizationAwareTraining(),
        }
        for name, attempt in attempts.items():
            try:
                attempt()
            except ImportError as error:
                messages[name] = f"{type(error).__name__}: {error}"
            else:
                messages[name] = "no error"
        PostTrainingQuantization(DynamicQuantConfig(engine="torchao"))  # needs neither torch.ao nor PT2E
        return {"messages": messages}

    print("RESULTS=" + json.dumps(RESULTS))


if __name__ == "__main__":
    main()
