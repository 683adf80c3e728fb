"""resolve_model_attribute: which submodule of a (Lightning) module is the deployable model, without Lightning."""

import pytest
from torch import nn

from lightning_distill.lightning.modules._attribute import resolve_model_attribute


class Holder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.encoder = nn.Linear(4, 4)
        self.criterion = nn.CrossEntropyLoss()
        self.act = nn.ReLU()  # no parameters: never the model
        self.name = "not a module"


def test_names_paths_self_and_auto():
    holder = Holder()
    assert resolve_model_attribute(holder, "backbone.encoder", "T") == ("backbone.encoder", holder.backbone.encoder)
    assert resolve_model_attribute(holder, "self", "T") == ("", holder)
    # auto: no student/model, so the one child with parameters that is not a loss or metric
    assert resolve_model_attribute(holder, "auto", "T") == ("backbone", holder.backbone)
    holder.model = nn.Linear(2, 2)
    assert resolve_model_attribute(holder, "auto", "T")[0] == "model"
    holder.student = nn.Linear(2, 2)
    assert resolve_model_attribute(holder, "auto", "T")[0] == "student"


def test_errors_name_the_attribute_and_list_the_children():
    holder = Holder()
    with pytest.raises(
        ValueError,
        match=r"T: model_attribute 'name' is a str, not an nn.Module of Holder; .*"
        r"backbone \(Module\), criterion \(CrossEntropyLoss\), act \(ReLU\)",
    ):
        resolve_model_attribute(holder, "name", "T")
    with pytest.raises(ValueError, match=r"'backbone.decoder' names no submodule"):
        resolve_model_attribute(holder, "backbone.decoder", "T")
    holder.other = nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"found 2: backbone, other\."):
        resolve_model_attribute(holder, "auto", "T")
    with pytest.raises(ValueError, match=r"model_attribute must be 'auto', 'self' .* got 'a b'"):
        resolve_model_attribute(holder, "a b", "T")
