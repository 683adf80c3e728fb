"""The quantization tests' models, data and fixtures (a trained MNIST MLP, a tiny BERT), shared with the export tests.

Imported by the export test modules; see ``tests/core/quantization/quant_helpers.py`` for why there is no conftest here.

PYTEST_DONT_REWRITE: plain helpers, imported by the test modules before pytest registers them as plugins.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quantization"))

from quant_helpers import (
    BERT_LABELS,
    accuracy,
    bert_batches,
    bert_logits,
    calibration,
    mnist,
    tiny_bert,
    trained_mlp,
)

__all__ = ["BERT_LABELS", "accuracy", "bert_batches", "bert_logits", "calibration", "mnist", "tiny_bert", "trained_mlp"]
