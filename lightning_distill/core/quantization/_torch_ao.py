"""The one door to PyTorch's deprecated ``torch.ao.quantization``: imported on first use, never at package import.

PyTorch deprecates ``torch.ao.quantization`` (and its module packages ``torch.ao.nn.quantized``, ``.intrinsic``,
``.qat``) in favour of torchao. The eager and FX engines (``_eager.py``, ``_fx.py``) are built on it, so they import
it through :func:`load`, which turns its absence into a :class:`TorchAoUnavailableError` naming the config's
torchao equivalent; everything else in the package imports and runs without it.

torchao's own PT2E (``prepare_pt2e``, ``convert_pt2e``, the X86 Inductor quantizer) still imports parts of
``torch.ao.quantization`` in torchao 0.18, so on such a PyTorch only torchao's ``quantize_`` (dynamic int8) and
ONNX Runtime int8 remain; :func:`pt2e_problem` says so in the errors.
"""

from __future__ import annotations

import importlib
import importlib.util
import warnings
from types import ModuleType
from typing import Any

import torch

from lightning_distill.core.errors import UserError

# The packages a PyTorch without torch.ao.quantization would lack (the legacy torch.quantization and torch.nn.* aliases
# re-export them); an ImportError naming one of these means "this PyTorch no longer ships it".
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

# Each eager-engine config -> what replaces it on torchao.
_EQUIVALENT = {
    "DynamicQuantConfig": "DynamicQuantConfig(engine='torchao') (torchao quantize_, "
    "Int8DynamicActivationInt8WeightConfig)",
    "StaticQuantConfig": "StaticQuantConfig(engine='torchao') (PT2E, X86InductorQuantizer)",
    "QATConfig": "QATConfig(engine='torchao') through quantize(model, config, calibration_data=...) (PT2E QAT, "
    "X86InductorQuantizer) in your own training loop",
}
_PT2E_MODULE = "torchao.quantization.pt2e.quantize_pt2e"


class TorchAoUnavailableError(UserError, ImportError):
    """This PyTorch no longer ships ``torch.ao.quantization`` (or torchao's PT2E still needs it); the message names
    the engine to use instead."""


def is_dropped(name: str | None) -> bool:
    """Whether the module ``name`` is one of the packages listed in :data:`DROPPED` (or inside one)."""
    return bool(name) and any(name == d or name.startswith(d + ".") for d in DROPPED)


def load(module: str, config_name: str) -> ModuleType:
    """Import ``module`` (a ``torch.ao`` module) for the eager / FX engine of ``config_name``, without its
    deprecation warning.

    Raises:
        TorchAoUnavailableError: this PyTorch does not ship it; the message names the torchao equivalent.
        ImportError: any other import failure (a broken install, a missing dependency of ``torch.ao``), as raised:
            blaming it on a dropped ``torch.ao`` would send the user to the wrong fix.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "torch.ao.quantization is deprecated and will be removed"
            return importlib.import_module(module)
    except ImportError as error:
        if not is_dropped(error.name):
            raise
        raise TorchAoUnavailableError(_message(config_name)) from error


def _message(config_name: str) -> str:
    equivalent = _EQUIVALENT.get(config_name, "engine='torchao'")
    message = (
        f"{config_name}(engine='eager') needs torch.ao.quantization, which this PyTorch ({torch.__version__}) no "
        f"longer ships: use {equivalent}"
    )
    if config_name != "DynamicQuantConfig":
        problem = pt2e_problem()
        if problem:
            message += (
                f"; but {problem}, so here use DynamicQuantConfig(engine='torchao') or ONNX Runtime int8 "
                "(OnnxExport with quantization)"
            )
    return message


def pt2e_problem() -> str | None:
    """Why torchao's PT2E cannot run here because of a missing ``torch.ao`` module (``None``: it imports, or torchao
    is not installed at all, which the caller reports as a missing extra)."""
    if importlib.util.find_spec("torchao") is None:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importlib.import_module(_PT2E_MODULE)
    except ImportError as error:
        if is_dropped(error.name):
            return f"torchao {_torchao_version()}'s PT2E still imports torch.ao modules ({error.name})"
        raise
    return None


def check_engine(config: Any) -> None:
    """Raise if the PyTorch stack the engine of ``config`` (a quantization config) is built on cannot be imported here.

    ``engine="eager"`` (eager and FX graph mode) needs ``torch.ao.quantization``; ``engine="torchao"`` static and QAT
    need torchao's PT2E, which in torchao 0.18 imports parts of it too; torchao's dynamic ``quantize_`` and
    bitsandbytes need neither. Called by ``quantize``, ``check_quantizable`` and the callbacks' constructors, so a
    PyTorch that no longer ships ``torch.ao.quantization`` fails before any work.

    Raises:
        TorchAoUnavailableError: (an ImportError) the engine cannot run on this PyTorch; the message names the
            torchao equivalent of the config.
    """
    engine = getattr(config, "engine", None)
    name = type(config).__name__
    if engine == "eager":
        load("torch.ao.quantization", name)
    elif engine == "torchao" and name != "DynamicQuantConfig":
        check_pt2e(name)


def check_pt2e(config_name: str) -> None:
    """Raise :class:`TorchAoUnavailableError` if torchao's PT2E needs a ``torch.ao`` module this PyTorch lacks."""
    problem = pt2e_problem()
    if problem:
        raise TorchAoUnavailableError(
            f"{config_name}(engine='torchao') runs torchao's PT2E, and {problem}, which this PyTorch "
            f"({torch.__version__}) no longer ships: use DynamicQuantConfig(engine='torchao') or ONNX Runtime int8 "
            "(OnnxExport with quantization)"
        )


def _torchao_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torchao")
    except PackageNotFoundError:  # pragma: no cover (find_spec found it)
        return "(unknown version)"
