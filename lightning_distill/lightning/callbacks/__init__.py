"""Lightning callbacks: pruning on a schedule, quantization-aware training, post-fit quantization and export, and
writing predictions."""

from lightning_distill.lightning.callbacks.magnitude_pruning import MagnitudePruning
from lightning_distill.lightning.callbacks.onnx_export import OnnxExport
from lightning_distill.lightning.callbacks.post_training_quantization import PostTrainingQuantization
from lightning_distill.lightning.callbacks.prediction_writer import PredictionWriter
from lightning_distill.lightning.callbacks.quantization_aware_training import QuantizationAwareTraining
from lightning_distill.lightning.callbacks.structured_pruning import StructuredPruning

__all__ = [
    "MagnitudePruning",
    "OnnxExport",
    "PostTrainingQuantization",
    "PredictionWriter",
    "QuantizationAwareTraining",
    "StructuredPruning",
]
