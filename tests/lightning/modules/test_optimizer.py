"""The modules' AdamW: the fused kernel (what transformers.Trainer uses by default) where the parameters allow it."""

import copy

import torch
from torch import nn

from lightning_distill.lightning.modules import ClassifierModule
from lightning_distill.lightning.modules.classifier import fused_supported


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def test_plain_cpu_parameters_get_the_fused_kernel_and_step_as_the_loop_does() -> None:
    module = ClassifierModule(_mlp(), learning_rate=1e-2, weight_decay=0.01)
    optimizer = module.configure_optimizers()
    assert optimizer.defaults["fused"] is True
    reference = copy.deepcopy(module.model)
    loop = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.01, foreach=False)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for model, opt in ((module.model, optimizer), (reference, loop)):
        for _ in range(5):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for fused, plain in zip(module.model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-6)


def test_parameters_the_fused_kernel_cannot_take_fall_back() -> None:
    assert not fused_supported([])
    assert not fused_supported([nn.Parameter(torch.zeros(2, device="meta"))])
    assert fused_supported([nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2, dtype=torch.float16))])


def test_a_saved_state_keeps_the_kernel_the_optimizer_was_built_for() -> None:
    """A checkpoint from before fused AdamW (``fused: None``) resumes on the fused kernel, and the reverse."""
    module = ClassifierModule(_mlp(), learning_rate=1e-2)
    fused = module.configure_optimizers()
    old = torch.optim.AdamW(module.model.parameters(), lr=1e-2, foreach=True)
    x, y = torch.randn(16, 8), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(module.model(x), y).backward()
    old.step()
    fused.load_state_dict(old.state_dict())
    assert fused.param_groups[0]["fused"] is True and not fused.param_groups[0]["foreach"]
    fused.step()  # runs on the fused kernel with the loaded moments
    assert fused.state[next(iter(module.model.parameters()))]["step"].item() == 2


def test_16_bit_amp_with_a_grad_scaler_keeps_the_foreach_kernel() -> None:
    from types import SimpleNamespace

    from lightning.pytorch.plugins.precision import MixedPrecision

    from lightning_distill.lightning.modules.classifier import gradients_stay_scaled

    scaler = torch.amp.GradScaler("cuda", enabled=False)
    assert gradients_stay_scaled(SimpleNamespace(precision_plugin=MixedPrecision("16-mixed", "cuda", scaler=scaler)))
    assert not gradients_stay_scaled(SimpleNamespace(precision_plugin=MixedPrecision("bf16-mixed", "cpu")))
    assert not gradients_stay_scaled(None)
