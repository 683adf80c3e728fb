import sys
from pathlib import Path

# The quantization tests' models and data (a trained MNIST MLP, a tiny BERT) are shared with the export tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "quantization"))

from quant_helpers import bert_batches, calibration, mnist, tiny_bert, trained_mlp

__all__ = ["bert_batches", "calibration", "mnist", "tiny_bert", "trained_mlp"]
