"""lightning-distill: knowledge distillation, pruning, quantization and ONNX export for PyTorch Lightning."""

__version__ = "0.1.0"

__all__ = ["__version__"]
