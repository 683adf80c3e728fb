"""Run in a fresh process: rebuild each architecture, load its pruned folder and write its outputs."""

import sys
from pathlib import Path

import torch
from architectures import as_module, build, example_inputs

from lightning_distill.core.pruning import load_pruned

if __name__ == "__main__":
    torch.set_num_threads(1)  # as the tests: another thread count may change the last bits of the outputs
    root = Path(sys.argv[1])
    for name in sys.argv[2:]:
        model = load_pruned(build(name), root / name).eval()
        with torch.no_grad():
            torch.save(as_module(name, model)(*example_inputs(name)), root / f"{name}.reloaded.pt")
