"""Optional dependencies: each feature that needs one says which extra installs it when it is missing."""

from __future__ import annotations

import importlib
from types import ModuleType

from lightning_distill.core.errors import MissingExtraError

# Top-level package -> the extra of pyproject.toml that installs it.
EXTRAS = {
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "onnxscript": "onnx",
    "bitsandbytes": "bnb",
    "optuna": "tune",
    "matplotlib": "plot",
    "torchao": "torchao",
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module``, or raise a :class:`~lightning_distill.core.errors.MissingExtraError` (an ImportError) naming
    ``feature`` and the extra that installs the package.

    Args:
        module: The module to import, e.g. ``"onnxruntime"`` or ``"onnxruntime.quantization"``.
        feature: What needs it, for the message, e.g. ``"quantize_onnx"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        package = module.split(".")[0]
        extra = EXTRAS.get(package, "all")
        raise MissingExtraError(
            f"{feature} needs the '{package}' package, which is not installed; install it with the [{extra}] extra: "
            f"pip install 'lightning-distill[{extra}]' (or [all] for every optional feature)"
        ) from error
