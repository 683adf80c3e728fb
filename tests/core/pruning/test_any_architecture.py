"""Structured pruning of models users bring: a CNN of their own, torchvision's resnet18 and mobilenet_v3_small, and
tiny ViT and RoBERTa models built from configs. Each is pruned at 50%, runs, exports to ONNX and reloads, from its
saved folder, in a fresh process with identical outputs."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from architectures import UserCNN, as_module, build, example_inputs
from torch import nn

from lightning_distill.core.pruning import (
    find_unit_groups,
    prune_structured,
    remove_units,
    save_pruned,
    slice_optimizer_states,
)
from lightning_distill.core.safe_load import load_file

NAMES = ["user_cnn", "resnet18", "mobilenet_v3_small", "vit", "roberta"]
HERE = Path(__file__).parent


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.fixture(scope="module")
def pruned(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every architecture pruned at 50%, saved, and reloaded by one fresh process."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("pruned")
    results = {}
    for name in NAMES:
        model = build(name)
        inputs = example_inputs(name)
        before = n_params(model)
        trace = None if name in ("vit", "roberta") else inputs[0][:1]  # Hugging Face models have default inputs
        counts = prune_structured(model, 0.5, example_inputs=trace)
        with torch.no_grad():
            outputs = as_module(name, model)(*inputs)
        save_pruned(model, root / name)
        results[name] = {"model": model, "before": before, "counts": counts, "outputs": outputs}
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    subprocess.run([sys.executable, str(HERE / "reload_pruned.py"), str(root), *NAMES], check=True, env=env)
    for name in NAMES:
        results[name]["reloaded"] = load_file(root / f"{name}.reloaded.pt", "reloaded outputs")
    return results


@pytest.mark.parametrize("name", NAMES)
def test_half_the_units_go_the_model_runs_and_reloads_in_a_fresh_process(pruned: dict, name: str) -> None:
    result = pruned[name]
    assert result["counts"] and all(
        after == before - round(0.5 * before) for before, after in result["counts"].values()
    )
    # Transformers keep their embeddings (the residual stream's width); the rest of their encoder layers halves.
    assert n_params(result["model"]) < (0.7 if name in ("vit", "roberta") else 0.6) * result["before"]
    assert torch.isfinite(result["outputs"]).all()
    assert torch.equal(result["reloaded"], result["outputs"])


@pytest.mark.parametrize("name", NAMES)
def test_the_pruned_model_exports_to_onnx_with_the_same_outputs(pruned: dict, name: str, tmp_path: Path) -> None:
    module = as_module(name, pruned[name]["model"])
    inputs = example_inputs(name)
    names = [f"input_{i}" for i in range(len(inputs))]
    torch.onnx.export(module, inputs, str(tmp_path / "m.onnx"), dynamo=False, input_names=names, output_names=["y"])
    session = ort.InferenceSession(str(tmp_path / "m.onnx"))
    onnx_out = session.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    np.testing.assert_allclose(onnx_out, pruned[name]["outputs"].numpy(), atol=1e-4)


def test_groups_follow_residuals_concatenation_grouped_and_depthwise_convolutions() -> None:
    model = build("user_cnn")
    groups, skipped = find_unit_groups(model, example_inputs=torch.randn(1, 3, 8, 8))
    assert [(g.name, g.kind, g.num_units) for g in groups] == [
        ("left.0", "channels", 8),
        ("right.0", "channels", 8),
        ("mix.0", "channels", 8),  # feeds a conv of 2 groups: a unit is one channel of each group's inputs
        ("grouped", "channels", 8),  # 2 groups of 8 outputs, and the depthwise conv after them
        ("pointwise.0", "channels", 16),  # with the residual branch's output: they are added
    ]
    assert skipped == {"head": "its outputs are the model's outputs"}
    residual = groups[4].layers
    assert {"pointwise.0", "pointwise.1", "residual.0", "residual.1", "head"} <= set(residual)
    assert "depthwise" in groups[3].layers  # a depthwise conv follows its input channels


def test_removing_silent_channels_leaves_the_cnn_outputs_unchanged() -> None:
    model = build("user_cnn")
    with torch.no_grad():
        # Channels 0..3 of the left branch and 8.. of the residual stream are zero and used by nothing.
        for layer in (model.left[0], model.left[1]):
            layer.weight[:4], layer.bias[:4] = 0.0, 0.0
        model.mix[0].weight[:, :4] = 0.0
        for layer in (model.pointwise[0], model.pointwise[1], model.residual[0], model.residual[1]):
            layer.weight[8:], layer.bias[8:] = 0.0, 0.0
        model.residual[0].weight[:, 8:] = 0.0
        model.head.weight[:, 8:] = 0.0
    x = torch.randn(3, 3, 16, 16)
    expected = model(x)
    result = prune_structured(model, 0.5, include=["left.0", "pointwise.0"], example_inputs=x[:1])
    assert result == {"left.0": (8, 4), "pointwise.0": (16, 8)}
    assert (model.mix[0].in_channels, model.residual[0].out_channels, model.head.in_features) == (12, 8, 8)
    assert torch.allclose(model(x), expected, atol=1e-5)


def test_optimizer_states_follow_the_cut_parameters_and_training_goes_on() -> None:
    model = build("user_cnn").train()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    x, y = torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 3])
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()
    weight = model.mix[0].weight
    moment = optimizer.state[weight]["exp_avg"].clone()
    group = next(g for g in find_unit_groups(model, example_inputs=x)[0] if g.name == "mix.0")
    records = remove_units(group, torch.tensor([1, 5, 6]))
    slice_optimizer_states([optimizer], records)
    # a unit is one input channel of each of the grouped conv's 2 groups: channels 1, 5, 6 and 9, 13, 14 stay
    assert model.mix[0].weight is weight and weight.shape == (6, 16, 1, 1)
    assert torch.equal(optimizer.state[weight]["exp_avg"], moment[[1, 5, 6, 9, 13, 14]])
    assert optimizer.state[model.grouped.weight]["exp_avg"].shape == model.grouped.weight.shape == (16, 3, 3, 3)
    optimizer.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    optimizer.step()  # would fail on shape mismatches


def test_a_cnn_without_example_inputs_fails_saying_what_to_pass() -> None:
    with pytest.raises(ValueError, match=r"needs example inputs .* pass example_inputs: .*torch.randn\(1, 3, 224"):
        prune_structured(UserCNN(), 0.5)
    with pytest.raises(ValueError, match=r"could not trace the model \(UserCNN\) .*RuntimeError.*pass example_inputs"):
        prune_structured(UserCNN(), 0.5, example_inputs=torch.randn(1, 5, 8, 8))
    with pytest.raises(ValueError, match=r"selects no prunable unit group; found head: its outputs are the model's"):
        prune_structured(UserCNN(), 0.5, unit_types=["heads"], example_inputs=torch.randn(1, 3, 8, 8))
