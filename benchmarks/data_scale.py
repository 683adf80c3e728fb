"""Memory and time of the text data module's construction, prepare_data and setup as the training set grows.

For each size, a training parquet file of that many examples (the CLINC training texts repeated, with their intents)
is written to a temporary folder next to CLINC's own validation and test files. Each measurement runs in a fresh
Python process (one thread, ``num_proc`` 1), twice in a row on the same folders: the first run is the cold one
(``datasets`` converts the parquet files, the token cache is empty), the second a new process on the same data (for
the new code, a token-cache hit). "before" is the code at ``--before-rev`` (extracted with ``git archive``), "after"
the working tree. A run measures construction + ``prepare_data`` + ``setup`` + the first batch of the
length-grouped training loader; peak RSS growth is ``ru_maxrss`` at the end minus ``ru_maxrss`` after the imports
and a first tokenizer load; ``kb_per_example`` divides it by all examples (train, validation and test), so at
30k it is mostly the fixed cost of loading the data set and the data module's own tokenizers.

    python benchmarks/data_scale.py                        # 30k, 300k and 1M, before and after (about 10 minutes)
    python benchmarks/data_scale.py --sizes 30000          # a smoke run
Writes benchmarks/results/data_scale.json. Acceptance (issue #15): after, at 1M, growth <= 0.5 KB per example and
the second run's setup (cache hit) under 3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _results import write_result

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CLINC = SHARED / "data" / "clinc_oos" / "plus"
TOKENIZER = SHARED / "models" / "minilm-l6-h384-uncased"
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "0"}


def write_data(folder: Path, size: int) -> dict[str, str]:
    """``train.parquet`` of ``size`` examples (CLINC's training rows repeated) plus CLINC's validation and test."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True, exist_ok=True)
    train = pq.read_table(CLINC / "train.parquet")
    repeated = pa.concat_tables([train] * -(-size // train.num_rows)).slice(0, size)
    pq.write_table(repeated, folder / "train.parquet")
    files = {"train": str(folder / "train.parquet")}
    for split in ("validation", "test"):
        files[split] = str(CLINC / f"{split}.parquet")
    return files


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    """One measurement, in this (fresh) process; prints one JSON line."""
    import datasets  # noqa: F401  (imported here so that its import is not counted as the data's memory)
    import torch
    from transformers import AutoTokenizer

    from lightning_distill.lightning.data import TextClassificationDataModule

    torch.set_num_threads(1)
    AutoTokenizer.from_pretrained(str(TOKENIZER))  # imports and first tokenizer load are not the data's cost
    kwargs = dict(
        tokenizer=str(TOKENIZER),
        data_files=json.loads(args.files),
        label_column="intent",
        max_length=32,
        batch_size=32,
        group_by_length=True,
        cache_dir=args.hf_cache,
    )
    if args.token_cache:
        kwargs["token_cache_dir"] = args.token_cache
    base = _peak_mb()
    times = {}
    start = time.perf_counter()
    data = TextClassificationDataModule(**kwargs)
    times["init_s"] = time.perf_counter() - start
    mark = time.perf_counter()
    data.prepare_data()
    times["prepare_data_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    data.setup("fit")
    times["setup_s"] = time.perf_counter() - mark
    mark = time.perf_counter()
    next(iter(data.train_dataloader()))
    times["first_batch_s"] = time.perf_counter() - mark
    times["total_s"] = time.perf_counter() - start
    growth = _peak_mb() - base
    examples = sum(len(data.dataset(split)) for split in ("train", "val", "test"))
    print(
        json.dumps(
            {key: round(value, 3) for key, value in times.items()}
            | {"examples": examples, "peak_rss_growth_mb": round(growth, 1)}
            | {"kb_per_example": round(growth * 1024 / examples, 3)}
        )
    )


def measure(code: Path, files: dict[str, str], hf_cache: Path, token_cache: Path | None) -> dict:
    command = [sys.executable, __file__, "--child", "--files", json.dumps(files), "--hf-cache", str(hf_cache)]
    if token_cache is not None:
        command += ["--token-cache", str(token_cache)]
    env = os.environ | ONE_THREAD | {"PYTHONPATH": str(code)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"measurement failed ({' '.join(command)}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def old_code(rev: str, folder: Path) -> Path:
    """The package as it was at ``rev``, extracted into ``folder``."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "lightning_distill"], capture_output=True)
    if archive.returncode:
        raise RuntimeError(f"git archive {rev} failed: {archive.stderr.decode()}")
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[30_000, 300_000, 1_000_000])
    parser.add_argument("--before-rev", default="990dbf9", help="git revision of the old (list-based) data module")
    parser.add_argument("--skip-before", action="store_true", help="measure the working tree only")
    parser.add_argument("--output", default="benchmarks/results/data_scale.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--files", help=argparse.SUPPRESS)
    parser.add_argument("--hf-cache", help=argparse.SUPPRESS)
    parser.add_argument("--token-cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="data_scale_") as temporary:
        temporary = Path(temporary)
        codes = {"after": ROOT}
        if not args.skip_before:
            codes = {"before": old_code(args.before_rev, temporary / "before")} | codes
        for size in args.sizes:
            files = write_data(temporary / f"data_{size}", size)
            for name, code in codes.items():
                hf_cache, token_cache = temporary / f"hf_{name}_{size}", temporary / f"tokens_{name}_{size}"
                for run in ("first", "second"):
                    result = measure(code, files, hf_cache, token_cache if name == "after" else None)
                    rows.append({"code": name, "train_examples": size, "run": run} | result)
                    print(json.dumps(rows[-1]), flush=True)
    first = {r["train_examples"]: r for r in rows if r["code"] == "after" and r["run"] == "first"}
    second = {r["train_examples"]: r for r in rows if r["code"] == "after" and r["run"] == "second"}
    largest = max(second)
    report = {
        "settings": {
            "sizes": args.sizes,
            "before_rev": None if args.skip_before else args.before_rev,
            "tokenizer": TOKENIZER.name,
            "max_length": 32,
            "threads": 1,
            "num_proc": 1,
            "cpus": os.cpu_count(),
            "measured": "construction + prepare_data + setup + first length-grouped training batch, fresh process",
        },
        "rows": rows,
        "acceptance_at_largest_size": {
            "train_examples": largest,
            "kb_per_example_first_run": round(first[largest]["kb_per_example"], 3),
            "kb_per_example_second_run": round(second[largest]["kb_per_example"], 3),
            "kb_per_example_limit": 0.5,
            "second_run_setup_s": second[largest]["setup_s"],
            "second_run_total_s": second[largest]["total_s"],
            "setup_limit_s": 3.0,
        },
    }
    write_result(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
