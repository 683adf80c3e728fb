"""Test accuracy of saved text classifiers (save_pretrained folders) on a parquet split; accuracy only, no latency.

Used to compare students trained with and without dropout from the same teacher:
    python benchmarks/text_accuracy.py FOLDER [FOLDER ...] --data ../shared/data/clinc_oos/plus/test.parquet
Writes benchmarks/results/text_accuracy.json (one row per folder) and prints the rows.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer


def accuracy(folder: str, texts: list[str], labels: torch.Tensor, batch_size: int) -> float:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    correct = 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            encoded = tokenizer(
                texts[start : start + batch_size], padding=True, truncation=True, max_length=32, return_tensors="pt"
            )
            predicted = model(**encoded).logits.argmax(-1)
            correct += int((predicted == labels[start : start + batch_size]).sum())
    return correct / len(texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--data", default="../shared/data/clinc_oos/plus/test.parquet")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--output", default="benchmarks/results/text_accuracy.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    frame = pd.read_parquet(args.data)
    texts, labels = frame["text"].tolist(), torch.tensor(frame["intent"].tolist())
    rows = [{"folder": f, "accuracy": accuracy(f, texts, labels, 256), "examples": len(texts)} for f in args.folders]
    for row in rows:
        print(f"{row['accuracy']:.4f}  {row['folder']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
