"""ONNX export with a parity check, ONNX Runtime optimization, int8 quantization, inference sessions and export
folders that optimum and transformers load."""

from lightning_distill.core.export.config import (
    ORT_QUANT_PRESETS,
    OnnxExportConfig,
    OrtQuantConfig,
    OrtSessionConfig,
    check_providers,
)
from lightning_distill.core.export.exported import ExportedClassifier, load_exported
from lightning_distill.core.export.exported_tensor import ExportedTensorClassifier
from lightning_distill.core.export.first_token import cut_for_export, first_token_classifier
from lightning_distill.core.export.folder import GRAPH_FILES, export_text_classifier
from lightning_distill.core.export.hub import hub_files, push_to_hub
from lightning_distill.core.export.metadata import read_label_names, read_metadata
from lightning_distill.core.export.model_card import add_measurements, read_export_info, write_model_card
from lightning_distill.core.export.onnx import export_onnx
from lightning_distill.core.export.ort_quantization import quantize_onnx
from lightning_distill.core.export.parity import OnnxParityError, ParityReport, check_parity
from lightning_distill.core.export.runtime import create_session, onnx_predictor, optimize_onnx
from lightning_distill.core.export.tensor_folder import export_tensor_classifier

__all__ = [
    "GRAPH_FILES",
    "ORT_QUANT_PRESETS",
    "ExportedClassifier",
    "ExportedTensorClassifier",
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
    "export_tensor_classifier",
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
