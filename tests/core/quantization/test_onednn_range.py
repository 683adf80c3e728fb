"""oneDNN's int8 activations on x86 CPUs with and without an int8 dot-product instruction (VNNI, AMX)."""

from __future__ import annotations

import pytest

from lightning_distill.core.quantization import _eager


def _activation_range(qat: bool) -> bool:
    activation = _eager.default_qconfig("onednn", qat=qat).activation()
    return getattr(activation, "activation_post_process", activation).reduce_range


@pytest.mark.parametrize("qat", [False, True])
def test_onednn_keeps_activations_to_7_bits_without_vnni(monkeypatch, qat: bool) -> None:
    monkeypatch.setattr(_eager, "is_x86", lambda: True)
    monkeypatch.setattr(_eager, "has_int8_dot_product", lambda: False)
    assert _activation_range(qat) is True  # VPMADDUBSW's 16-bit sums would saturate with 8-bit activations
    monkeypatch.setattr(_eager, "has_int8_dot_product", lambda: True)
    assert _activation_range(qat) is False  # PyTorch's own onednn default: all 8 bits with VNNI or AMX


def test_other_backends_keep_pytorchs_defaults() -> None:
    from torch.ao import quantization as tq

    for backend in ("x86", "fbgemm", "qnnpack"):
        ours, theirs = _eager.default_qconfig(backend).activation(), tq.get_default_qconfig(backend).activation()
        assert ours.reduce_range == theirs.reduce_range


@pytest.mark.parametrize("qat", [False, True])
def test_the_fx_mapping_gives_every_op_that_shares_the_global_qconfig_7_bits(monkeypatch, qat: bool) -> None:
    from torch import nn

    from lightning_distill.core.quantization import _fx
    from lightning_distill.core.quantization.config import QATConfig, StaticQuantConfig

    monkeypatch.setattr(_eager, "is_x86", lambda: True)
    monkeypatch.setattr(_eager, "has_int8_dot_product", lambda: False)
    config = QATConfig(backend="onednn") if qat else StaticQuantConfig(backend="onednn")
    mapping = _fx._mapping(nn.Linear(2, 2), config, qat)

    def reduce_range(qconfig) -> bool:
        activation = qconfig.activation()
        return getattr(activation, "activation_post_process", activation).reduce_range

    assert reduce_range(mapping.global_qconfig) is True
    # PyTorch's onednn mapping reuses its global qconfig object for the transposed convolutions
    assert reduce_range(mapping.object_type_qconfigs[nn.ConvTranspose2d]) is True
    monkeypatch.setattr(_eager, "has_int8_dot_product", lambda: True)
    assert reduce_range(_fx._mapping(nn.Linear(2, 2), config, qat).object_type_qconfigs[nn.ConvTranspose2d]) is False
