"""ONNX export with a parity check, ONNX Runtime optimization, int8 quantization and inference sessions."""

from lightning_distill.export.config import OnnxExportConfig, OrtQuantConfig, OrtSessionConfig
from lightning_distill.export.metadata import read_label_names, read_metadata
from lightning_distill.export.onnx import export_onnx
from lightning_distill.export.ort_quantization import quantize_onnx
from lightning_distill.export.parity import OnnxParityError, ParityReport, check_parity
from lightning_distill.export.runtime import create_session, onnx_predictor, optimize_onnx

__all__ = [
    "OnnxExportConfig",
    "OnnxParityError",
    "OrtQuantConfig",
    "OrtSessionConfig",
    "ParityReport",
    "check_parity",
    "create_session",
    "export_onnx",
    "onnx_predictor",
    "optimize_onnx",
    "quantize_onnx",
    "read_label_names",
    "read_metadata",
]
