import pytest
import torch

from lightning_distill.core.models import MLP
from lightning_distill.core.pruning import magnitude_masks, prune_magnitude, select_weights, sparsity_report


def test_global_masks_prune_the_smallest_weights_exactly() -> None:
    weights = {"a": torch.tensor([[0.1, -5.0], [3.0, 0.2]]), "b": torch.tensor([-0.05, 4.0, 0.3, 6.0])}
    masks = magnitude_masks(weights, 0.5, scope="global")
    assert masks["a"].tolist() == [[False, True], [True, False]]
    assert masks["b"].tolist() == [False, True, False, True]


def test_layer_scope_prunes_each_tensor_to_the_target() -> None:
    torch.manual_seed(0)
    weights = {"small": torch.randn(10, 10) * 0.01, "large": torch.randn(20, 5) * 10}
    masks = magnitude_masks(weights, 0.3, scope="layer")
    assert int((~masks["small"]).sum()) == 30 and int((~masks["large"]).sum()) == 30
    global_masks = magnitude_masks(weights, 0.3, scope="global")
    assert int((~global_masks["small"]).sum()) == 60 and int((~global_masks["large"]).sum()) == 0


def test_masks_only_grow_and_count_earlier_pruning() -> None:
    torch.manual_seed(0)
    weight = torch.randn(100)
    first = magnitude_masks({"w": weight}, 0.2)["w"]
    changed = weight.clone()
    changed[~first] = 100.0  # pruned weights that grew back (without masking) must stay pruned
    second = magnitude_masks({"w": changed}, 0.5, masks={"w": first})["w"]
    assert int((~second).sum()) == 50
    assert bool((~second)[~first].all())
    assert torch.equal(magnitude_masks({"w": weight}, 0.1, masks={"w": second})["w"], second)


def test_prune_magnitude_on_an_mlp_excludes_by_pattern() -> None:
    model = MLP(num_classes=3, in_features=20, hidden_sizes=[16, 8])
    classifier_before = model.classifier.weight.detach().clone()
    masks = prune_magnitude(model, 0.6, scope="layer", exclude=["classifier"])
    assert set(masks) == {"hidden.0.weight", "hidden.2.weight"}
    report = sparsity_report({n: p for n, p in model.named_parameters() if n in masks})
    assert report["hidden.0.weight"] == pytest.approx(0.6, abs=1 / 320)
    assert report["hidden.2.weight"] == pytest.approx(0.6, abs=1 / 128)
    assert torch.equal(model.classifier.weight, classifier_before)
    kept = model.hidden[0].weight[masks["hidden.0.weight"]].abs()
    assert kept.min() > 0


def test_a_pattern_that_matches_nothing_names_the_layers() -> None:
    model = MLP(num_classes=3, in_features=20, hidden_sizes=[16])
    with pytest.raises(
        ValueError, match=r"include=\['encoder.\*'\].*selects no trainable Linear.*hidden.0, classifier"
    ):
        select_weights(model, include=["encoder.*"])
    with pytest.raises(ValueError, match="layer_types must be"):
        select_weights(model, layer_types=["Dense"])
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        prune_magnitude(model, 1.0)
