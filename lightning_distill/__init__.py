"""lightning-distill: knowledge distillation, pruning, quantization and ONNX export for PyTorch Lightning.

- :mod:`lightning_distill.core`: plain PyTorch, never imports Lightning (models, losses, pruning, quantization,
  export, benchmark, the teacher-logit cache).
- :mod:`lightning_distill.lightning`: the Lightning layer (modules, callbacks, data, tuning, the CLI).
- :mod:`lightning_distill.recipes`: the recipe engine, the shared text steps and one module per task recipe.

The modules moved in 0.2 keep their 0.1 import paths until 0.3, with a warning (:mod:`._compat`).
"""

from lightning_distill import _compat

__version__ = "0.1.0"

_compat.install()

__all__ = ["__version__"]
