"""Test accuracy of saved text classifiers on a parquet split; accuracy only, no latency.

Folders written by ``save_pretrained`` or by ``save_pruned`` (a pruned student: ``pruned.json`` + ``model.pt``). With
``--out-of-scope LABEL`` (CLINC150: 42, the ``oos`` intent) each row also splits the accuracy into in-scope accuracy and
the out-of-scope class's recall, where a distilled or pruned CLINC student gains or loses its points:
    python benchmarks/text_accuracy.py FOLDER [FOLDER ...] --data ../shared/data/clinc_oos/plus/test.parquet \\
        --out-of-scope 42
Writes benchmarks/results/text_accuracy.json (one row per folder) and prints the rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch
from _results import write_result
from transformers import AutoTokenizer

from lightning_distill.core.pruning.serialization import SHAPES_FILE
from lightning_distill.recipes.text.artifacts import forward_inputs, load_classifier, load_pruned_classifier


def predictions(folder: str, texts: list[str], batch_size: int) -> torch.Tensor:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pruned = (Path(folder) / SHAPES_FILE).is_file()
    model = (load_pruned_classifier(folder) if pruned else load_classifier(folder)).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, max_length=32, return_tensors="pt"
            )
            logits = model(**forward_inputs(model, encoded))
            out.append(getattr(logits, "logits", logits).argmax(-1))
    return torch.cat(out)


def scores(predicted: torch.Tensor, labels: torch.Tensor, out_of_scope: int | None) -> dict[str, float]:
    row = {"accuracy": (predicted == labels).float().mean().item()}
    if out_of_scope is not None:
        oos = labels == out_of_scope
        row["in_scope_accuracy"] = (predicted[~oos] == labels[~oos]).float().mean().item()
        row["out_of_scope_recall"] = (predicted[oos] == out_of_scope).float().mean().item()
        row["out_of_scope_examples"] = int(oos.sum())
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--data", default="../shared/data/clinc_oos/plus/test.parquet")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out-of-scope", type=int, help="label id of the out-of-scope class (CLINC150: 42)")
    parser.add_argument("--output", default="benchmarks/results/text_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = pd.read_parquet(args.data)
    texts, labels = frame["text"].tolist(), torch.tensor(frame["intent"].tolist())
    rows = []
    for folder in args.folders:
        row = {"folder": folder, **scores(predictions(folder, texts, 256), labels, args.out_of_scope)}
        rows.append({**row, "examples": len(texts)})
        print("  ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()), flush=True)
    write_result(args.output, rows)


if __name__ == "__main__":
    main()
