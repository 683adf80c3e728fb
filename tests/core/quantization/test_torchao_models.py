"""engine="torchao" on the three model families for each method not covered in test_torchao.py: dynamic int8 of a
CNN, static int8 of a BERT encoder (PT2E exports it with keyword inputs and dynamic batch and sequence dims), QAT of
a CNN and of a BERT encoder. Tolerances as for the eager / FX engines (test_quantize.py, test_fx.py): BERT logits
within 0.02 of float, predictions agreeing with float on >= 90% of the examples."""

from pathlib import Path

import pandas as pd
import torch
from quant_helpers import bert_logits
from test_torchao import SmallCNN, _images
from tiny_text import INTENTS, write_bert, write_data, write_tokenizer
from torch import nn

from lightning_distill.core.quantization import DynamicQuantConfig, QATConfig, StaticQuantConfig, quantize

pytest_plugins = ["quant_helpers"]


def _agreement(model: nn.Module, quantized: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(-1) == quantized(x).argmax(-1)).float().mean())


def test_static_bert_runs_every_linear_in_int8_on_any_batch_and_length(tiny_bert, bert_batches):
    config = StaticQuantConfig(engine="torchao", calibration_batches=4)
    quantized = quantize(tiny_bert, config, calibration_data=bert_batches)
    linears = [n for n, m in tiny_bert.named_modules() if isinstance(m, nn.Linear)]
    assert quantized.quantization_report.quantized == linears
    for batch in bert_batches:  # batch sizes 1-8, lengths 5-16: exported with dynamic dims
        assert (bert_logits(quantized, batch) - bert_logits(tiny_bert, batch)).abs().max() <= 0.02


def test_dynamic_cnn_quantizes_its_linear_head_and_keeps_predictions():
    model = SmallCNN().eval()
    quantized = quantize(model, DynamicQuantConfig(engine="torchao"))
    report = quantized.quantization_report
    assert report.quantized == ["head"] and report.skipped[0].name == "features.0"
    assert _agreement(model, quantized, _images(64, 3)) >= 0.9


def test_qat_cnn_trains_with_fake_quantized_conv_and_converts_to_int8():
    model = SmallCNN()
    calibration = [_images(16, i) for i in range(2)]
    prepared = quantize(model, QATConfig(engine="torchao"), calibration_data=calibration)
    assert {layer.status for layer in prepared.quantization_report.layers} == {"fake-quantized"}
    optimizer = torch.optim.SGD(prepared.parameters(), lr=1e-3)
    for x in calibration:
        loss = nn.functional.cross_entropy(prepared(x), model.eval()(x).argmax(-1))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    converted = quantize(prepared, QATConfig(engine="torchao", step="convert"))
    assert converted.quantization_report.quantized == ["features.0", "head"]
    prepared.eval()
    assert _agreement(prepared, converted, _images(64, 5)) >= 0.9


def _intent_batches(folder: Path) -> dict[str, list[dict[str, torch.Tensor]]]:
    """The tiny intent queries of tiny_text, tokenized in batches of 8 (padded to each batch's longest query)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(folder / "tokenizer"))
    files = write_data(folder / "data", sizes=(96, 8, 48))
    batches = {}
    for split in ("train", "test"):
        rows = pd.read_parquet(files[split])
        batches[split] = []
        for start in range(0, len(rows), 8):
            chunk = rows.iloc[start : start + 8]
            batch = dict(tokenizer(list(chunk["text"]), padding=True, return_tensors="pt"))
            batch["labels"] = torch.tensor(chunk["intent"].to_numpy())
            batches[split].append(batch)
    return batches


def _train_bert(model: nn.Module, batches: list[dict[str, torch.Tensor]], epochs: int, lr: float) -> None:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(epochs):
        for batch in batches:
            inputs = {k: v for k, v in batch.items() if k != "labels"}  # the exported graph takes no labels
            loss = nn.functional.cross_entropy(model(**inputs).logits, batch["labels"])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()


def _bert_accuracy(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> float:
    correct = sum(int((bert_logits(model, b).argmax(-1) == b["labels"]).sum()) for b in batches)
    return correct / sum(len(b["labels"]) for b in batches)


def test_qat_bert_trains_on_intent_queries_and_converts_every_linear_to_int8(tmp_path):
    from transformers import BertForSequenceClassification

    data = _intent_batches(tmp_path)
    folder = write_bert(tmp_path / "bert", hidden=32, heads=4, labels=INTENTS)
    model = BertForSequenceClassification.from_pretrained(folder)
    torch.manual_seed(0)
    _train_bert(model.train(), data["train"], epochs=6, lr=3e-3)  # seeded: 100% test accuracy from epoch 2
    float_accuracy = _bert_accuracy(model.eval(), data["test"])
    assert float_accuracy >= 0.9  # the task is learned, so the int8 model has something to keep

    prepared = quantize(model, QATConfig(engine="torchao"), calibration_data=data["train"][:2])
    assert prepared.training and "fake-quantized" in {layer.status for layer in prepared.quantization_report.layers}
    _train_bert(prepared, data["train"], epochs=1, lr=1e-4)
    converted = quantize(prepared, QATConfig(engine="torchao", step="convert"))
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert converted.quantization_report.quantized == linears
    prepared.eval()
    for batch in data["test"]:  # int8 kernels compute what the fake-quantized graph trained with, within 3%
        expected = bert_logits(prepared, batch)
        assert (bert_logits(converted, batch) - expected).abs().max() <= 0.03 * expected.abs().max()
    assert _bert_accuracy(converted, data["test"]) >= float_accuracy - 0.05
