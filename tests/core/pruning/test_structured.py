import pytest
import torch
from torch import nn
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    DistilBertConfig,
    DistilBertForSequenceClassification,
)

from lightning_distill.core.models import MLP
from lightning_distill.core.pruning import (
    find_unit_groups,
    l1_importance,
    prune_structured,
    remove_units,
    slice_optimizer_states,
    taylor_importance,
)


def tiny_bert() -> BertForSequenceClassification:
    config = BertConfig(
        num_hidden_layers=2, hidden_size=32, num_attention_heads=4, intermediate_size=64, vocab_size=100, num_labels=3
    )
    return BertForSequenceClassification(config).eval()


def tiny_distilbert() -> DistilBertForSequenceClassification:
    config = DistilBertConfig(n_layers=2, dim=32, n_heads=4, hidden_dim=64, vocab_size=100, num_labels=3)
    return DistilBertForSequenceClassification(config).eval()


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_mlp_groups_and_expected_parameter_count() -> None:
    model = MLP(num_classes=3, in_features=20, hidden_sizes=[16, 8], dropout=0.1)
    groups, skipped = find_unit_groups(model)
    assert [g.name for g in groups] == ["hidden.0", "hidden.3"]
    assert skipped == {"classifier": "its outputs are the model's outputs"}
    assert n_params(model) == (20 * 16 + 16) + (16 * 8 + 8) + (8 * 3 + 3)
    assert prune_structured(model, 0.5) == {"hidden.0": (16, 8), "hidden.3": (8, 4)}
    assert n_params(model) == (20 * 8 + 8) + (8 * 4 + 4) + (4 * 3 + 3)
    assert model.hidden[0].out_features == 8 and model.hidden[3].in_features == 8
    assert model(torch.randn(5, 20)).shape == (5, 3)


def test_removing_dead_neurons_leaves_the_mlp_outputs_unchanged() -> None:
    model = MLP(num_classes=3, in_features=20, hidden_sizes=[16]).eval()
    dead = [1, 4, 9, 10, 15]
    with torch.no_grad():
        model.hidden[0].weight[dead] = 0.0
        model.hidden[0].bias[dead] = 0.0
    x = torch.randn(7, 20)
    expected = model(x)
    assert prune_structured(model, 5 / 16) == {"hidden.0": (16, 11)}
    assert torch.allclose(model(x), expected, atol=1e-6)
    assert torch.equal(model.hidden[0].weight.abs().sum(1) > 0, torch.ones(11, dtype=torch.bool))


def test_bert_heads_and_ffn_neurons_expected_parameter_reduction() -> None:
    model = tiny_bert()
    groups, skipped = find_unit_groups(model)
    assert [(g.name, g.kind, g.num_units) for g in groups] == [
        ("bert.encoder.layer.0.attention.self", "heads", 4),
        ("bert.encoder.layer.0.intermediate.dense", "neurons", 64),
        ("bert.encoder.layer.1.attention.self", "heads", 4),
        ("bert.encoder.layer.1.intermediate.dense", "neurons", 64),
    ]
    assert skipped == {
        "bert.encoder.layer.0.attention.output.dense": "it sets the embedding width (the residual stream of every "
        "transformer layer), which is kept",
        "bert.pooler.dense": "outside the transformer layers (pooler or classification head): not pruned",
        "classifier": "its outputs are the model's outputs",
    }
    before = n_params(model)
    prune_structured(model, 0.5)
    # per layer: 2 heads x 8 dims x (q, k, v rows of 32 + bias, and 32 output columns) + 32 FFN neurons x (33 + 32)
    assert before - n_params(model) == 2 * (2 * 8 * (3 * 33 + 32) + 32 * (33 + 32))
    attention = model.bert.encoder.layer[0].attention.self
    assert (attention.num_attention_heads, attention.all_head_size, attention.query.out_features) == (2, 16, 16)
    ids = torch.randint(0, 100, (2, 9))
    assert model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.shape == (2, 3)


def test_removing_silent_heads_and_neurons_leaves_bert_outputs_unchanged() -> None:
    model = tiny_bert()
    layer = model.bert.encoder.layer[0]
    with torch.no_grad():
        for linear in (layer.attention.self.query, layer.attention.self.key, layer.attention.self.value):
            linear.weight[8:16] = 0.0  # head 1
            linear.bias[8:16] = 0.0
        layer.attention.output.dense.weight[:, 8:16] = 0.0
        layer.intermediate.dense.weight[:32] = 0.0
        layer.intermediate.dense.bias[:32] = 0.0  # GELU(0) = 0: these neurons contribute nothing
    ids = torch.randint(0, 100, (3, 11))
    mask = torch.ones_like(ids)
    mask[0, 8:] = 0
    expected = model(input_ids=ids, attention_mask=mask).logits
    result = prune_structured(model, 0.25, include=["bert.encoder.layer.0.*"], unit_types=["heads"])
    assert result["bert.encoder.layer.0.attention.self"] == (4, 3)
    prune_structured(model, 0.5, include=["bert.encoder.layer.0.intermediate.*"])
    assert layer.intermediate.dense.out_features == 32
    assert torch.allclose(model(input_ids=ids, attention_mask=mask).logits, expected, atol=1e-5)


def test_distilbert_heads_and_ffn() -> None:
    model = tiny_distilbert()
    before = n_params(model)
    result = prune_structured(model, 0.5, unit_types=["heads"])
    assert result == {f"distilbert.transformer.layer.{i}.attention": (4, 2) for i in range(2)}
    assert model.distilbert.transformer.layer[0].attention.n_heads == 2
    assert before - n_params(model) == 2 * (2 * 8 * (3 * 33 + 32))
    prune_structured(model, 0.25, unit_types=["neurons"])
    assert model.distilbert.transformer.layer[1].ffn.lin2.in_features == 48
    assert model(input_ids=torch.randint(0, 100, (2, 5))).logits.shape == (2, 3)


def test_importance_scores() -> None:
    model = MLP(num_classes=3, in_features=4, hidden_sizes=[3])
    with torch.no_grad():
        model.hidden[0].weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, -2, 0, 0], [0, 0, 0, 0.5]]))
        model.hidden[0].bias.zero_()
        model.classifier.weight.fill_(1.0)
    group = find_unit_groups(model)[0][0]
    assert l1_importance(group).tolist() == [4.0, 5.0, 3.5]
    model(torch.randn(8, 4)).sum().backward()
    expected = (model.hidden[0].weight * model.hidden[0].weight.grad).sum(1)
    expected += model.hidden[0].bias * model.hidden[0].bias.grad
    expected += (model.classifier.weight * model.classifier.weight.grad).sum(0)
    assert torch.allclose(taylor_importance(group), expected.abs())


def test_optimizer_states_are_cut_with_the_parameters() -> None:
    model = MLP(num_classes=3, in_features=6, hidden_sizes=[4])
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(8, 6)).sum().backward()
    optimizer.step()
    moment = optimizer.state[model.hidden[0].weight]["exp_avg"].clone()
    group = find_unit_groups(model)[0][0]
    slice_optimizer_states([optimizer], remove_units(group, torch.tensor([0, 2])))
    assert torch.equal(optimizer.state[model.hidden[0].weight]["exp_avg"], moment[[0, 2]])
    assert optimizer.state[model.classifier.weight]["exp_avg"].shape == (3, 2)
    optimizer.zero_grad()
    model(torch.randn(8, 6)).sum().backward()
    optimizer.step()  # would fail on shape mismatches


def test_bad_structured_input() -> None:
    with pytest.raises(ValueError, match=r"would remove every unit of hidden.0 \(2 units\)"):
        prune_structured(MLP(num_classes=3, in_features=4, hidden_sizes=[2]), 0.75)
    with pytest.raises(ValueError, match="selects no prunable unit group"):
        prune_structured(MLP(num_classes=3, in_features=4, hidden_sizes=[2]), 0.5, include=["encoder.*"])
    with pytest.raises(ValueError, match="unit_types must be"):
        find_unit_groups(tiny_bert(), unit_types=["layers"])
    with pytest.raises(ValueError, match="cannot remove every unit"):
        remove_units(find_unit_groups(MLP(num_classes=3, in_features=4, hidden_sizes=[2]))[0][0], torch.tensor([]))
