"""Structured-pruning recovery on the offline CLINC150 student: which schedule keeps the most accuracy.

Every variant removes half the attention heads and half the FFN neurons of each layer of the distilled 3-layer MiniLM
student (the target of issue 4) and distils from the teacher's cached logits, in a plain PyTorch loop (so it runs the
same on a GPU, where it was explored, and on CPU). Variants differ in importance (L1 weight norm or first-order
Taylor scores gathered between pruning points), scope (per layer or global), schedule (one shot before recovery, or
K cubic steps over the first epochs), recovery length, KD temperature/weight, and an optional hidden-state loss to
the unpruned student. Test accuracy (with in-scope accuracy and out-of-scope recall) is recorded after every epoch.

Inputs: a student saved with ``save_pretrained`` (``runs/clinc_offline/distill/student``), the teacher-logit cache the
recipe wrote (``runs/clinc_offline/teacher_logits/*.pt``, rows in training-file order), the CLINC ``plus`` parquet
files. Writes ``benchmarks/results/pruning_recovery.json``.

Run:
    python benchmarks/pruning_recovery.py --variants base gradual_taylor gt_ep8 --seeds 0 1
    (about 10 s per variant on an H200; about 50 s per epoch on 2 CPU cores)
"""

import argparse
import json
import math
import time
from pathlib import Path

import pandas as pd
import torch
from _results import write_result
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from lightning_distill.core.losses import distillation_loss
from lightning_distill.core.pruning.importance import taylor_importance
from lightning_distill.core.pruning.structured import (
    find_unit_groups,
    keep_indices,
    l1_importance,
    remove_units,
    units_to_keep,
)

RESULTS = Path(__file__).resolve().parent / "results" / "pruning_recovery.json"
OOS_LABEL = 42  # CLINC150's "oos" intent in the Hub label order
dev = "cpu"
tok = None
TRAIN = VAL = TEST = TEACHER = None
STUDENT = ""
ROWS_LIMIT = None


def prepare(args: argparse.Namespace) -> None:
    """Tokenize the three splits once (padded to 32 tokens) and load the cached teacher logits onto the device."""
    global dev, tok, TRAIN, VAL, TEST, TEACHER, STUDENT, ROWS_LIMIT
    dev = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    STUDENT, ROWS_LIMIT = args.student, args.limit
    tok = AutoTokenizer.from_pretrained(STUDENT)
    TRAIN, VAL, TEST = (enc(Path(args.data) / f"{split}.parquet") for split in ("train", "validation", "test"))
    logits = torch.load(args.teacher_logits, map_location="cpu", weights_only=True)
    logits = logits["logits"] if isinstance(logits, dict) else logits
    if len(logits) < len(TRAIN[2]):
        raise ValueError(f"{args.teacher_logits} holds {len(logits)} rows of logits but the training set has more")
    TEACHER = logits.to(dev)[: len(TRAIN[2])]


def enc(path):
    d = pd.read_parquet(path)
    if ROWS_LIMIT:
        d = d.iloc[:ROWS_LIMIT]
    e = tok(list(d.text), padding="max_length", truncation=True, max_length=32, return_tensors="pt")
    return e["input_ids"].to(dev), e["attention_mask"].to(dev), torch.tensor(d.intent.values).to(dev)


def load():
    m = AutoModelForSequenceClassification.from_pretrained(STUDENT, dtype=torch.float32)
    return m.to(dev)


@torch.no_grad()
def evaluate(m, data):
    m.eval()
    ids, mask, y = data
    p = torch.cat(
        [m(input_ids=ids[i : i + 1024], attention_mask=mask[i : i + 1024]).logits for i in range(0, len(y), 1024)]
    ).argmax(-1)
    ins = y != OOS_LABEL
    return {
        "acc": round((p == y).float().mean().item(), 4),
        "in": round((p[ins] == y[ins]).float().mean().item(), 4),
        "oos": round((p[~ins] == OOS_LABEL).float().mean().item(), 4) if (~ins).any() else None,
    }


def groups_of(m):
    return find_unit_groups(m, ("bert.encoder.*",))[0]


def prune_to(m, originals, sparsity, scores=None, scope="layer"):
    """Prune every group to round((1-s)*original) units (from its current units)."""
    groups = groups_of(m)
    imp = {g.name: (scores[g.name] if scores and g.name in scores else l1_importance(g)) for g in groups}
    if scope == "layer":
        counts = {g.name: units_to_keep(originals[g.name], sparsity, g.name) for g in groups}
    else:  # global per kind, scores normalised by the group's mean
        counts = {}
        for kind in ("heads", "neurons"):
            gs = [g for g in groups if g.kind == kind]
            total_keep = sum(units_to_keep(originals[g.name], sparsity, g.name) for g in gs)
            allscores = torch.cat([imp[g.name].float().cpu() / imp[g.name].float().mean().cpu() for g in gs])
            owner = torch.cat([torch.full((g.num_units,), i) for i, g in enumerate(gs)])
            top = torch.argsort(-allscores, stable=True)[:total_keep]
            for i, g in enumerate(gs):
                counts[g.name] = max(1, int((owner[top] == i).sum()))
    records = []
    for g in groups:
        c = min(counts[g.name], g.num_units)
        if c < g.num_units:
            records += remove_units(g, keep_indices(imp[g.name], c))
    return {g.name: g.num_units for g in groups}


def kd(logits, t, y, T, w):
    """The project's distillation loss (soft weight ``w`` at temperature ``T``, labels the rest)."""
    return distillation_loss(logits, t, y, T, w).loss


def taylor_scores(m, batches=60, T=2.0, w=0.5):
    m.train()
    ids, mask, y = TRAIN
    acc = {}
    g0 = torch.Generator(device="cpu").manual_seed(123)
    perm = torch.randperm(len(y), generator=g0).to(dev)
    for b in range(min(batches, len(y) // 64)):
        idx = perm[b * 64 : (b + 1) * 64]
        m.zero_grad()
        kd(m(input_ids=ids[idx], attention_mask=mask[idx]).logits, TEACHER[idx], y[idx], T, w).backward()
        for g in groups_of(m):
            s = taylor_importance(g)
            acc[g.name] = acc.get(g.name, 0) + s
    m.zero_grad()
    return acc


def run(
    name,
    seed=0,
    lr=2e-4,
    epochs=5,
    T=2.0,
    w=0.5,
    importance="l1",
    scope="layer",
    gradual_steps=0,
    gradual_epochs=2.0,
    sparsity=0.5,
    hidden=0.0,
    wd=0.01,
):
    torch.manual_seed(seed)
    m = load()
    ref = None
    if hidden:
        ref = load().eval()
        for p in ref.parameters():
            p.requires_grad_(False)
    originals = {g.name: g.num_units for g in groups_of(m)}
    ids, mask, y = TRAIN
    n = len(y)
    steps_per_epoch = math.ceil(n / 64)
    total = steps_per_epoch * epochs
    prune_points = []
    if gradual_steps == 0:
        scores = taylor_scores(m, T=T, w=w) if importance == "taylor" else None
        prune_to(m, originals, sparsity, scores, scope)
    else:
        end = int(gradual_epochs * steps_per_epoch)
        # K points from step 0 to `end`; cubic sparsity at the k-th: S * (1 - (1 - k/K)^3), k = 1..K
        prune_points = [round(end * k / (gradual_steps - 1)) for k in range(gradual_steps)]
    opt = torch.optim.AdamW([p for p in m.parameters()], lr=lr, weight_decay=wd)
    warm = max(1, int(total * 0.06))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / warm if s < warm else max(0.0, (total - s) / max(1, total - warm))
    )
    hist = []
    step = 0
    taylor_acc = {}
    g = torch.Generator(device="cpu").manual_seed(seed)
    t0 = time.time()
    for ep in range(epochs):
        m.train()
        perm = torch.randperm(n, generator=g).to(dev)
        for b in range(steps_per_epoch):
            if gradual_steps and step in prune_points:
                k = prune_points.index(step) + 1
                s = sparsity * (1 - (1 - k / len(prune_points)) ** 3)
                sc = taylor_acc if importance == "taylor" and taylor_acc else None
                prune_to(m, originals, s, sc, scope)
                taylor_acc = {}
                # rebuild optimizer state (simplest: new param shapes -> drop moments of changed params)
                for p in m.parameters():
                    st = opt.state.get(p)
                    if st and st["exp_avg"].shape != p.shape:
                        opt.state[p] = {}
            idx = perm[b * 64 : (b + 1) * 64]
            out = m(input_ids=ids[idx], attention_mask=mask[idx], output_hidden_states=bool(hidden))
            loss = kd(out.logits, TEACHER[idx], y[idx], T, w)
            if hidden:
                with torch.no_grad():
                    r = ref(input_ids=ids[idx], attention_mask=mask[idx], output_hidden_states=True).hidden_states
                mk = mask[idx].unsqueeze(-1).float()
                hl = sum(
                    ((a - b) ** 2 * mk).sum() / mk.sum() / a.shape[-1]
                    for a, b in zip(out.hidden_states[1:], r[1:], strict=True)
                )
                loss = loss + hidden * hl
            opt.zero_grad()
            try:
                loss.backward()
            except RuntimeError:
                print("FAILED at step", step, prune_points, flush=True)
                raise
            if importance == "taylor" and gradual_steps:
                for gr in groups_of(m):
                    taylor_acc[gr.name] = taylor_acc.get(gr.name, 0) + taylor_importance(gr)
            opt.step()
            sched.step()
            step += 1
            out = loss = hl = None  # a live graph keeps the old shapes' gradient accumulators; pruning needs them gone
        hist.append({"epoch": ep, "val": evaluate(m, VAL), "test": evaluate(m, TEST)})
    units = {k: v.num_units for k, v in {g.name: g for g in groups_of(m)}.items()}
    best = max(hist, key=lambda h: (h["val"]["acc"], h["epoch"]))
    row = {
        "name": name,
        "seed": seed,
        "seconds": round(time.time() - t0, 1),
        "final": hist[-1]["test"],
        "best_val_epoch": best["epoch"],
        "best_val_test": best["test"],
        "history": hist,
        "units": units,
        "params": sum(p.numel() for p in m.parameters()),
    }
    print(
        json.dumps(
            {k: row[k] for k in ("name", "seed", "seconds", "final", "best_val_epoch", "best_val_test", "params")}
        ),
        flush=True,
    )
    return row


VARIANTS = [
    ("base", {}),
    ("gradual_l1", {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5}),
    ("taylor", {"importance": "taylor"}),
    ("global", {"scope": "global"}),
    ("hidden1", {"hidden": 1.0}),
    ("ep10", {"epochs": 10}),
    ("T4w0.9", {"T": 4.0, "w": 0.9}),
    ("lr5e-4", {"lr": 5e-4}),
    ("gradual_taylor", {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "importance": "taylor"}),
    ("global_taylor", {"importance": "taylor", "scope": "global"}),
    ("ep10_gradual_l1", {"gradual_steps": 16, "gradual_epochs": 5.0, "epochs": 10}),
    (
        "gradual_taylor_hidden",
        {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "importance": "taylor", "hidden": 1.0},
    ),
    ("base", {"seed": 1}),
    ("hidden10", {"hidden": 10.0}),
    ("w1", {"w": 1.0}),
    ("w0", {"w": 0.0}),
    ("lr1e-4", {"lr": 1e-4}),
    ("gradual_l1", {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "seed": 1}),
    ("taylor", {"importance": "taylor", "seed": 1}),
    ("hidden1", {"hidden": 1.0, "seed": 1}),
    ("gradual_taylor", {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "importance": "taylor", "seed": 1}),
    ("gradual_taylor", {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "importance": "taylor", "seed": 2}),
    (
        "gradual_taylor_hidden",
        {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "importance": "taylor", "hidden": 1.0, "seed": 1},
    ),
    (
        "gradual_taylor_hidden",
        {"gradual_steps": 8, "gradual_epochs": 2.0, "epochs": 5, "importance": "taylor", "hidden": 1.0, "seed": 2},
    ),
    ("gt_ep8", {"gradual_steps": 12, "gradual_epochs": 4.0, "epochs": 8, "importance": "taylor"}),
    ("gt_ep8", {"gradual_steps": 12, "gradual_epochs": 4.0, "epochs": 8, "importance": "taylor", "seed": 1}),
    ("gt_3ep", {"gradual_steps": 8, "gradual_epochs": 1.0, "epochs": 3, "importance": "taylor"}),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", default="runs/clinc_offline/distill/student")
    parser.add_argument(
        "--teacher-logits", default=None, help="default: the one file in runs/clinc_offline/teacher_logits"
    )
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/clinc_oos/plus"))
    parser.add_argument("--variants", nargs="*", default=None, help="names (default: all); see VARIANTS")
    parser.add_argument("--seeds", type=int, nargs="*", default=None, help="run each chosen variant with these seeds")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    parser.add_argument("--limit", type=int, default=None, help="first N rows of each split (a smoke run)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.teacher_logits is None:
        found = sorted(Path("runs/clinc_offline/teacher_logits").glob("*.pt"))
        if len(found) != 1:
            parser.error(f"give --teacher-logits: found {len(found)} caches in runs/clinc_offline/teacher_logits")
        args.teacher_logits = str(found[0])
    names = {name for name, _ in VARIANTS}
    unknown = sorted(set(args.variants or []) - names)
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {sorted(names)}")
    prepare(args)
    base = load()
    unpruned = {"val": evaluate(base, VAL), "test": evaluate(base, TEST)}
    print("unpruned", unpruned, flush=True)
    del base
    chosen = [(n, kw) for n, kw in VARIANTS if not args.variants or n in args.variants]
    if args.seeds is not None:
        chosen = list({n: kw for n, kw in chosen if "seed" not in kw}.items())
        chosen = [(n, {**kw, "seed": seed}) for n, kw in chosen for seed in args.seeds]
    rows = []
    for name, kw in chosen:
        rows.append(run(name, **kw))
        result = {
            "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
            "torch": torch.__version__,
            "student": STUDENT,
            "unpruned": unpruned,
            "rows": rows,
        }
        write_result(args.output, result, indent=1)


if __name__ == "__main__":
    main()
