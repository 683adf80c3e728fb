"""``lightning-distill compress``: search distilled, exported students under a latency/size/accuracy budget.

Needs optuna (the ``[tune]`` extra), ONNX and ONNX Runtime (the ``[onnx]`` extra).
"""

from lightning_distill.lightning.compress.config import (
    Budget,
    CompressConfig,
    CompressConfigError,
    Dimension,
    Teacher,
    Trials,
    load_compress_config,
)
from lightning_distill.lightning.compress.front import dominates, non_dominated
from lightning_distill.lightning.compress.run import CompressResult, compress
from lightning_distill.lightning.compress.space import FAMILIES, Family, check_search_space

__all__ = [
    "FAMILIES",
    "Budget",
    "CompressConfig",
    "CompressConfigError",
    "CompressResult",
    "Dimension",
    "Family",
    "Teacher",
    "Trials",
    "check_search_space",
    "compress",
    "dominates",
    "load_compress_config",
    "non_dominated",
]
