"""Teacher-logit cache: build time and bytes per example, per storage format, on a tiny BERT and on MiniLM-L6.

Build time per example excludes the teacher's weight digest, a fixed cost per fit reported apart. Builds the cache
the way ``DistillationModule(cache_teacher_logits=True)`` does (one process: hash the teacher's
inputs, run the teacher in inference mode, write ``.npy`` parts to a fresh folder), then reads it back (a cache hit),
for float32, float16 and top-k storage, on the first ``--examples`` CLINC training texts (``max_length`` 32, 1 thread).
Per-example figures let ``docs/scale.md`` extrapolate to 100 million examples.

    python benchmarks/teacher_cache.py [--examples 384] [--threads 1]

Writes benchmarks/results/teacher_cache.json and prints one row per teacher and format.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _results import write_result
from transformers import BertConfig, BertForSequenceClassification

from lightning_distill.core.models import TransformerClassifier
from lightning_distill.core.teacher_cache.cache import load_or_compute, model_digest, plan_cache
from lightning_distill.core.teacher_cache.logits import StorageFormat
from lightning_distill.lightning.data import TextClassificationDataModule

SHARED = Path(__file__).resolve().parents[2] / "shared"
MINILM = SHARED / "models" / "minilm-l6-h384-uncased"
CLINC = SHARED / "data" / "clinc_oos" / "plus"


def _data(folder: Path, examples: int) -> TextClassificationDataModule:
    train = pd.read_parquet(CLINC / "train.parquet").head(examples)
    files = {}
    for split, frame in (("train", train), ("validation", train.head(16)), ("test", train.head(16))):
        files[split] = str(folder / f"{split}.parquet")
        frame.to_parquet(files[split])
    labels = [str(i) for i in range(151)]
    data = TextClassificationDataModule(
        str(MINILM), data_files=files, label_column="intent", labels=labels, max_length=32, batch_size=64
    )
    data.setup("fit")
    return data


def _teachers() -> dict[str, torch.nn.Module]:
    tiny = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        num_labels=151,
    )  # fmt: skip
    return {
        "tiny BERT (2 layers, hidden 32)": BertForSequenceClassification(tiny).eval(),
        "MiniLM-L6-H384": TransformerClassifier(str(MINILM), num_classes=151).eval(),
    }


def measure(teacher: torch.nn.Module, data: TextClassificationDataModule, storage: StorageFormat, batch: int) -> dict:
    loader = data.train_dataloader()
    start = time.perf_counter()
    model_digest(teacher)  # a fixed cost per fit (every tensor of the teacher), not per example
    digest = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache_dir:
        start = time.perf_counter()
        plan = plan_cache(teacher, data, loader, batch)
        hashed = time.perf_counter()
        logits, loaded = load_or_compute(teacher, plan, storage, cache_dir, torch.device("cpu"))
        built = time.perf_counter()
        assert not loaded
        again, loaded = load_or_compute(teacher, plan_cache(teacher, data, loader, batch), storage, cache_dir, "cpu")
        hit = time.perf_counter() - built
        assert loaded and torch.equal(again.dense(), logits.dense())
        disk = sum(p.stat().st_size for p in Path(cache_dir).rglob("*.npy"))
    examples = len(logits)
    return {
        "format": storage.name,
        "examples": examples,
        "teacher_digest_seconds": digest,
        "inputs_hash_ms_per_example": 1000 * (hashed - start - digest) / examples,
        "teacher_ms_per_example": 1000 * (built - hashed) / examples,
        "build_ms_per_example": 1000 * (built - start - digest) / examples,
        "second_fit_hit_seconds": hit,
        "bytes_per_example": logits.nbytes / examples,
        "disk_bytes_per_example_with_npy_headers": disk / examples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=384)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64, help="teacher_cache_batch_size")
    parser.add_argument("--output", default="benchmarks/results/teacher_cache.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    formats = [StorageFormat("float32"), StorageFormat("float16"), StorageFormat("float16", top_k=10, temperature=4.0)]
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = _data(Path(folder), args.examples)
        for name, teacher in _teachers().items():
            measure(teacher, data, formats[0], args.batch_size)  # warm-up: first calls allocate
            for storage in formats:
                row = {"teacher": name, "threads": args.threads, "batch_size": args.batch_size}
                row |= measure(teacher, data, storage, args.batch_size)
                rows.append(row)
                print(json.dumps(row))
    write_result(args.output, rows)


if __name__ == "__main__":
    main()
