"""The modules' AdamW: the fused kernel (what transformers.Trainer uses by default) where the parameters allow it."""

import copy

import torch
from torch import nn

from lightning_distill.modules import ClassifierModule
from lightning_distill.modules.classifier import fused_supported


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
