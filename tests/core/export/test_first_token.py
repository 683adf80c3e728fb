"""The last encoder layer cut to the first token: the same logits as the model (PyTorch and the exported graph, in a
fresh process), one row where the last layer's feed-forward block runs, and a refusal that says why where it would
change the results."""

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tiny_text import INTENTS, write_tokenizer

from lightning_distill.core.export import export_text_classifier, first_token_classifier
from lightning_distill.core.export.first_token import FirstTokenLayer, cut_for_export, first_token_unsupported
from lightning_distill.recipes.text.artifacts import forward_inputs

# Lengths 2 to 8 tokens once tokenized, so a padded batch masks most rows.
TEXTS = ["book a flight to the sun hotel", "what is the weather", "play", "rain rain", "hotel music a the to is"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(write_tokenizer(tmp_path_factory.mktemp("tok")))


# Weights drawn with std 0.5, not the usual 0.02: with tiny weights every layer is close to the identity and a wrong
# mask or a skipped part moves the logits by less than the tolerances; here it moves them by order 1.
SIZES = {"hidden_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 32}
COMMON = {"vocab_size": 40, "max_position_embeddings": 64, "initializer_range": 0.5, "num_labels": len(INTENTS)}


def classifier(kind: str = "Bert", attn_implementation: str = "eager"):
    import transformers

    torch.manual_seed(1)
    config = getattr(transformers, f"{kind}Config")(**SIZES, **COMMON, pad_token_id=0)
    config.id2label = dict(enumerate(INTENTS))
    config.label2id = {name: i for i, name in enumerate(INTENTS)}
    model = getattr(transformers, f"{kind}ForSequenceClassification")(config)
    model.config._attn_implementation = attn_implementation
    for module in model.modules():
        if hasattr(module, "config"):
            module.config._attn_implementation = attn_implementation
    return model.eval()


def encode(tokenizer, texts, model):
    return forward_inputs(model, tokenizer(texts, padding=True, return_tensors="pt"))


def encoder_of(model):
    return next(m for m in model.modules() if hasattr(m, "encoder") and hasattr(m, "embeddings"))


@pytest.mark.parametrize(
    "kind, attn_implementation", [("Bert", "eager"), ("Bert", "sdpa"), ("Roberta", "sdpa"), ("Electra", "eager")]
)
def test_cut_model_gives_the_models_logits_and_first_token_on_padded_batches(tokenizer, kind, attn_implementation):
    model = classifier(kind, attn_implementation)
    inputs = encode(tokenizer, TEXTS, model)
    assert inputs["attention_mask"].float().mean() < 0.8  # padding is there to be masked
    cut, reason = first_token_classifier(model, inputs)
    assert reason is None
    assert isinstance(encoder_of(cut).encoder.layer[-1], FirstTokenLayer)
    assert not isinstance(encoder_of(model).encoder.layer[-1], FirstTokenLayer)  # the model is left as it was
    other = encode(tokenizer, ["sun weather to play", "a", "book the hotel music rain"], model)  # not the checked one
    with torch.no_grad():
        hidden = encoder_of(cut)(**other).last_hidden_state
        whole = encoder_of(model)(**other).last_hidden_state
        torch.testing.assert_close(cut(**other).logits, model(**other).logits, rtol=0, atol=1e-5)
    assert hidden.shape[1] == 1 and whole.shape[1] > 1  # the last layer computed one position
    assert whole[:, 0].abs().max() > 0.5  # order-1 values, so the comparison below can tell a wrong cut
    torch.testing.assert_close(hidden[:, 0], whole[:, 0], rtol=0, atol=1e-5)


def test_distilbert_is_left_whole_with_the_reason_and_no_warning(tokenizer):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=40, dim=16, n_layers=2, n_heads=2, hidden_dim=32, num_labels=3)
    model = DistilBertForSequenceClassification(config).eval()
    assert "no single Hugging Face encoder" in first_token_unsupported(model)
    inputs = encode(tokenizer, TEXTS, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model the cut does not apply to is recorded, not warned about
        kept, words = cut_for_export(model, inputs)
    assert "no single Hugging Face encoder" in words
    with torch.no_grad():
        torch.testing.assert_close(kept(**inputs).logits, model(**inputs).logits)


def test_pre_layer_norm_layers_are_refused_by_their_parts():
    model = classifier("RobertaPreLayerNorm")
    assert "has parts a BERT layer has not: ['LayerNorm']" in first_token_unsupported(model)


class MeanPooled(nn.Module):
    """A BERT encoder with a head over the mean of every token: cutting the last layer would change its logits."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.config.hidden_size, 3)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden.mean(1))


def test_a_head_that_reads_every_token_is_found_by_its_logits(tokenizer):
    model = MeanPooled(classifier().bert)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert first_token_unsupported(model) is None  # its layers are BERT's: only the logits tell
    kept, reason = first_token_classifier(model, inputs)
    assert "logits differ" in reason and "reads more than the first token" in reason
    assert not isinstance(kept.encoder.encoder.layer[-1], FirstTokenLayer)


class SecondToken(MeanPooled):
    """A head over the second token: the cut model has no second position, so it fails."""

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 1])


def test_a_cut_model_that_fails_is_exported_whole_with_a_warning(tokenizer):
    model = SecondToken(classifier().bert)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with pytest.warns(UserWarning, match="the cut model fails on the example .IndexError"):
        kept, words = cut_for_export(model, inputs)
    assert not isinstance(kept.encoder.encoder.layer[-1], FirstTokenLayer)
    assert words.startswith("every token (the cut model fails")


RELOAD = """
import json, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import helper

folder, texts, last = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
from lightning_distill.core.export import load_exported
logits = load_exported(folder, "model.onnx").logits(texts)
# The feed-forward input of every layer as an extra output: how many positions each layer computed.
graph = onnx.load(f"{folder}/model.onnx")
names = {}
for node in graph.graph.node:
    for i in range(last + 1):
        if f"layer.{i}/" in node.name and node.name.endswith("intermediate/dense/MatMul"):
            names[i] = node.output[0]
graph.graph.output.extend(helper.make_empty_tensor_value_info(names[i]) for i in sorted(names))
session = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
feed = load_exported(folder, "model.onnx").encode(texts)
rows = [int(o.shape[1]) for o in session.run(None, feed)[1:]]
print(json.dumps({"logits": logits.tolist(), "rows": rows, "length": int(feed["input_ids"].shape[1])}))
"""


def test_exported_folder_runs_the_last_layer_for_one_token(tmp_path, tokenizer):
    model = classifier("Bert", "sdpa")
    export_text_classifier(model, tokenizer, tmp_path / "export", TEXTS[:3], graphs=("fp32",))
    card = (tmp_path / "export" / "README.md").read_text()
    assert "computed for the first token only" in card
    texts = ["sun weather to play", "a", "book the hotel", "rain rain rain music", "what is the song"]  # batch of 5
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "export"), json.dumps(texts), "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == [result["length"], result["length"], 1]  # layers 0 and 1 whole, layer 2 one row
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    assert np.abs(expected).max() > 0.5
    np.testing.assert_allclose(np.asarray(result["logits"]), expected, atol=1e-4)


def test_export_of_a_model_the_cut_changes_warns_and_keeps_every_token(tmp_path, tokenizer):
    model = MeanPooled(classifier().bert)
    model.config = model.encoder.config
    with pytest.warns(UserWarning, match="exported for every token, not the first only: the cut model's logits"):
        export_text_classifier(model, tokenizer, tmp_path / "export", TEXTS[:3], graphs=("fp32",))
    assert "computed for every token (the cut model's logits differ" in (tmp_path / "export" / "README.md").read_text()
    export_text_classifier(model, tokenizer, tmp_path / "whole", TEXTS[:3], graphs=("fp32",), first_token_only=False)
    assert "every token (first_token_only=False)" in (tmp_path / "whole" / "README.md").read_text()
