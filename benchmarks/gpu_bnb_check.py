"""GPU-only check: models quantized by ``quantize(model, BitsAndBytesConfig(...))`` (built on CPU) run on CUDA.

For an MLP and a tiny BERT classifier, each of int8 (LLM.int8; quantized on CPU, and with ``device="cuda"``), nf4 and
fp4: quantize, move to the GPU, run, and compare with the float model on the GPU (max absolute logit difference,
relative error, top-1 agreement); then save with ``save_quantized``, reload with ``load_quantized`` (on CPU) and
compare its outputs with the GPU ones.
Writes ``$OUT/gpu_bnb_check.json`` (default ``benchmarks/results/``). Run: ``python benchmarks/gpu_bnb_check.py``.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import traceback
from pathlib import Path

import torch
from _results import write_result
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from lightning_distill.core.quantization import BitsAndBytesConfig, load_quantized, quantize, save_quantized


def models() -> list[tuple[str, nn.Module, dict[str, torch.Tensor]]]:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 10)).eval()
    config = BertConfig(
        num_hidden_layers=2, hidden_size=128, num_attention_heads=4, intermediate_size=256, vocab_size=200, num_labels=5
    )
    bert = BertForSequenceClassification(config).eval()
    ids = torch.randint(5, 200, (16, 24))
    return [
        ("mlp", mlp, {"x": torch.randn(64, 256)}),
        ("bert", bert, {"input_ids": ids, "attention_mask": torch.ones_like(ids)}),
    ]


def logits(model: nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        out = model(inputs["x"]) if "x" in inputs else model(**inputs).logits
    return out.float()


def main() -> None:
    rows = []
    for name, model, inputs in models():
        cuda_inputs = {k: v.cuda() for k, v in inputs.items()}
        reference = logits(copy.deepcopy(model).cuda(), cuda_inputs)
        for weights, device in (("int8", "cpu"), ("int8", "cuda"), ("nf4", "cpu"), ("fp4", "cpu")):
            row = {"model": name, "weights": weights, "quantized_on": device}
            try:
                dtype = "float32" if weights == "int8" else "float16"
                config = BitsAndBytesConfig(weights=weights, compute_dtype=dtype, device=device)
                quantized = quantize(copy.deepcopy(model), config).cuda()
                out = logits(quantized, cuda_inputs)
                row["max_abs_diff"] = float((out - reference).abs().max())
                row["relative_error"] = float((out - reference).norm() / reference.norm())
                row["top1_agreement"] = float((out.argmax(-1) == reference.argmax(-1)).float().mean())
                row["layers"] = sorted({type(m).__name__ for m in quantized.modules() if "Linear" in type(m).__name__})
                with tempfile.TemporaryDirectory() as folder:
                    path = save_quantized(quantize(copy.deepcopy(model), config), Path(folder) / "q.pt")
                    # load_quantized rebuilds on CPU: compared there (int8 kernels differ a little between devices)
                    reloaded = load_quantized(path, copy.deepcopy(model))
                    cpu_out = logits(reloaded, inputs)
                    row["reloaded_on_cpu_max_abs_diff_vs_quantized"] = float((cpu_out - out.cpu()).abs().max())
            except Exception as error:
                traceback.print_exc()
                row["error"] = f"{type(error).__name__}: {error}"[:1000]
            print(json.dumps(row), flush=True)
            rows.append(row)
    import bitsandbytes

    out_dir = Path(os.environ.get("OUT", "benchmarks/results"))
    record = {
        "device": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "bitsandbytes": bitsandbytes.__version__,
        "rows": rows,
    }
    write_result(out_dir / "gpu_bnb_check.json", record, indent=1)


if __name__ == "__main__":
    main()
