"""Post-training and quantization-aware int8 quantization of PyTorch models: ``quantize(model, config)``."""

from lightning_distill.core.quantization.config import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    QuantConfig,
    StaticQuantConfig,
)
from lightning_distill.core.quantization.quantize import (
    check_quantizable,
    freeze_qat_batchnorm,
    prepare_qat_,
    quantize,
    set_qat_observers,
)
from lightning_distill.core.quantization.report import LayerOutcome, QuantizationReport
from lightning_distill.core.quantization.serialization import load_quantized, read_config, save_quantized

__all__ = [
    "BitsAndBytesConfig",
    "DynamicQuantConfig",
    "LayerOutcome",
    "QATConfig",
    "QuantConfig",
    "QuantizationReport",
    "StaticQuantConfig",
    "check_quantizable",
    "freeze_qat_batchnorm",
    "load_quantized",
    "prepare_qat_",
    "quantize",
    "read_config",
    "save_quantized",
    "set_qat_observers",
]
