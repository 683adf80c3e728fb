"""ONNX export with a parity check, ONNX Runtime optimization, int8 quantization, inference sessions and export
folders that optimum and transformers load."""

from lightning_distill.export.config import (
    ORT_QUANT_PRESETS,
    OnnxExportConfig,
    OrtQuantConfig,
    OrtSessionConfig,
    check_providers,
)
from lightning_distill.export.exported import ExportedClassifier, load_exported
from lightning_distill.export.first_token import cut_for_export, first_token_classifier
from lightning_distill.export.folder import GRAPH_FILES, export_text_classifier
from lightning_distill.export.hub import hub_files, push_to_hub
from lightning_distill.export.metadata import read_label_names, read_metadata
from lightning_distill.export.model_card import add_measurements, read_export_info, write_model_card
from lightning_distill.export.onnx import export_onnx
from lightning_distill.export.ort_quantization import quantize_onnx
from lightning_distill.export.parity import OnnxParityError, ParityReport, check_parity
from lightning_distill.export.runtime import create_session, onnx_predictor, optimize_onnx

__all__ = [
    "GRAPH_FILES",
    "ORT_QUANT_PRESETS",
    "ExportedClassifier",
    "OnnxExportConfig",
    "OnnxParityError",
    "OrtQuantConfig",
    "OrtSessionConfig",
    "ParityReport",
    "add_measurements",
    "check_parity",
    "check_providers",
    "create_session",
    "cut_for_export",
    "export_onnx",
    "export_text_classifier",
    "first_token_classifier",
    "hub_files",
    "load_exported",
    "onnx_predictor",
    "optimize_onnx",
    "push_to_hub",
    "quantize_onnx",
    "read_export_info",
    "read_label_names",
    "read_metadata",
    "write_model_card",
]
