"""The last encoder layer cut to the first token: the same logits as the model (PyTorch and the exported graph, in a
fresh process), one row where the last layer's feed-forward block runs, and a refusal that says why where it would
change the results."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tiny_text import INTENTS, write_bert, write_tokenizer

from lightning_distill.export import export_text_classifier, first_token_classifier
from lightning_distill.export.first_token import FirstTokenLayer, first_token_unsupported

# Lengths 2 to 8 tokens once tokenized, so a padded batch masks most rows.
TEXTS = ["book a flight to the sun hotel", "what is the weather", "play", "rain rain", "hotel music a the to is"]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(write_tokenizer(tmp_path_factory.mktemp("tok")))


def bert(tmp_path: Path, attn_implementation: str, layers: int = 3):
    from transformers import AutoModelForSequenceClassification

    folder = write_bert(tmp_path / f"bert_{attn_implementation}", layers=layers, labels=INTENTS, seed=1)
    return AutoModelForSequenceClassification.from_pretrained(folder, attn_implementation=attn_implementation).eval()


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
def test_cut_bert_gives_the_models_logits_on_padded_batches(tmp_path, tokenizer, attn_implementation):
    model = bert(tmp_path, attn_implementation)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert inputs["attention_mask"].float().mean() < 0.8  # padding is there to be masked
    cut, reason = first_token_classifier(model, inputs)
    assert reason is None
    assert isinstance(cut.bert.encoder.layer[-1], FirstTokenLayer)
    assert not isinstance(model.bert.encoder.layer[-1], FirstTokenLayer)  # the model itself is left as it was
    with torch.no_grad():
        hidden = cut.bert(**inputs).last_hidden_state
        other = tokenizer(["sun weather to play", "a"], padding=True, return_tensors="pt")  # not the checked batch
        torch.testing.assert_close(cut(**other).logits, model(**other).logits, rtol=0, atol=1e-5)
    assert hidden.shape[1] == 1  # the last layer computed one position


def test_cut_roberta_gives_the_models_logits(tokenizer):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
        max_position_embeddings=64, num_labels=3, pad_token_id=0,
    )  # fmt: skip
    model = RobertaForSequenceClassification(config).eval()
    inputs = {k: v for k, v in tokenizer(TEXTS, padding=True, return_tensors="pt").items() if k != "token_type_ids"}
    cut, reason = first_token_classifier(model, inputs)
    assert reason is None and isinstance(cut.roberta.encoder.layer[-1], FirstTokenLayer)


def test_distilbert_is_left_whole_with_the_reason(tokenizer):
    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    config = DistilBertConfig(vocab_size=40, dim=16, n_layers=2, n_heads=2, hidden_dim=32, num_labels=3)
    model = DistilBertForSequenceClassification(config).eval()
    assert "no single Hugging Face encoder" in first_token_unsupported(model)
    inputs = {k: v for k, v in tokenizer(TEXTS, padding=True, return_tensors="pt").items() if k != "token_type_ids"}
    kept, reason = first_token_classifier(model, inputs)
    assert "no single Hugging Face encoder" in reason
    with torch.no_grad():
        torch.testing.assert_close(kept(**inputs).logits, model(**inputs).logits)


class MeanPooled(nn.Module):
    """A BERT encoder with a head over the mean of every token: cutting the last layer would change its logits."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder, self.head = encoder, nn.Linear(encoder.config.hidden_size, 3)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(hidden.mean(1))


def test_a_head_that_reads_every_token_is_found_by_its_logits(tmp_path, tokenizer):
    model = MeanPooled(bert(tmp_path, "eager").bert)
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    assert first_token_unsupported(model) is None  # its layers are BERT's: only the logits tell
    kept, reason = first_token_classifier(model, inputs)
    assert "reads more than the first token" in reason
    assert not isinstance(kept.encoder.encoder.layer[-1], FirstTokenLayer)


RELOAD = """
import json, sys
import numpy as np, onnx, onnxruntime as ort
from onnx import helper

folder, texts, last = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
from lightning_distill.export import load_exported
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
    model = bert(tmp_path, "sdpa")
    export_text_classifier(model, tokenizer, tmp_path / "export", TEXTS[:3], graphs=("fp32",))
    card = (tmp_path / "export" / "README.md").read_text()
    assert "computed for the first token only" in card
    texts = ["sun weather to play", "a", "book the hotel"]
    out = subprocess.run(
        [sys.executable, "-c", RELOAD, str(tmp_path / "export"), json.dumps(texts), "2"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["rows"] == [result["length"], result["length"], 1]  # layers 0 and 1 whole, layer 2 one row
    with torch.no_grad():
        expected = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.numpy()
    np.testing.assert_allclose(np.asarray(result["logits"]), expected, atol=1e-4)


def test_export_of_an_unsupported_model_warns_and_keeps_every_token(tmp_path, tokenizer):
    model = MeanPooled(bert(tmp_path, "eager").bert)
    model.config = model.encoder.config
    model.config.id2label = dict(enumerate(INTENTS))
    with pytest.warns(UserWarning, match="exported for every token, not the first only: its head reads more"):
        export_text_classifier(model, tokenizer, tmp_path / "export", TEXTS[:3], graphs=("fp32",))
    assert "computed for every token (its head reads more" in (tmp_path / "export" / "README.md").read_text()
    export_text_classifier(model, tokenizer, tmp_path / "whole", TEXTS[:3], graphs=("fp32",), first_token_only=False)
    assert "every token (first_token_only=False)" in (tmp_path / "whole" / "README.md").read_text()
