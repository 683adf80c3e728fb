from quant_helpers import bert_batches, calibration, mnist, tiny_bert, trained_mlp

__all__ = ["bert_batches", "calibration", "mnist", "tiny_bert", "trained_mlp"]
