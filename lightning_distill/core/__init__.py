"""The core: plain PyTorch, never imports Lightning.

Models, losses, pruning, quantization, ONNX export, benchmarking and the teacher-logit cache work on any
``nn.Module`` without Lightning: :mod:`.models`, :mod:`.losses`, :mod:`.pruning`, :mod:`.quantization`,
:mod:`.export`, :mod:`.benchmark`, :mod:`.teacher_cache`, and the helpers beside them (:mod:`.batch`,
:mod:`.safe_load`, :mod:`.atomic`, :mod:`.cpu_features`, :mod:`.text_encoding`). Each is imported on its own.
"""

__all__: list[str] = []
