"""Does Hugging Face optimum load our export folders as they are? Labels of optimum and transformers vs ours.

``optimum-onnx`` 0.1.0 pins transformers 4.57, so it cannot share this project's environment (transformers 5). This
script:

1. builds a separate virtual environment (``benchmarks/.venv-optimum``, gitignored) with
   ``pip install "optimum-onnx[onnxruntime]==0.1.0"``. It sees this environment's packages
   (``--system-site-packages``) so PyTorch (multi-GB) and ONNX Runtime are reused, while its own transformers 4.57,
   tokenizers and huggingface_hub shadow ours;
2. with this project's environment, trains two small text classifiers a few steps on a handful of intent queries
   (a tiny 2-layer BERT with a toy WordPiece vocabulary, and the shared MiniLM-L6 with a fresh 3-label head and its
   real uncased WordPiece tokenizer) and writes each with ``export_text_classifier``;
3. labels some texts with the project's loader (``load_exported``) for each graph of each folder;
4. in the venv, loads each graph with ``ORTModelForSequenceClassification.from_pretrained(folder, file_name=...)``
   and runs ``transformers.pipeline("text-classification", model=..., tokenizer=...)`` on the same texts;
5. writes ``benchmarks/results/optimum_compat.json``: both sets of labels per graph and whether they are equal.

Run: ``nice python benchmarks/optimum_compat.py`` (the first run installs the venv: a few minutes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from _results import write_result

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

VENV = ROOT / "benchmarks" / ".venv-optimum"
OUTPUT = ROOT / "benchmarks" / "results" / "optimum_compat.json"
MINILM = ROOT.parent / "shared" / "models" / "minilm-l6-h384-uncased"
REQUIREMENT = "optimum-onnx[onnxruntime]==0.1.0"
INTENTS = ["travel", "weather", "music"]
TRAIN = [
    ("book a flight to the sun", 0),
    ("book the hotel", 0),
    ("a flight to a hotel", 0),
    ("what is the weather", 1),
    ("is the rain to the sun", 1),
    ("rain rain rain", 1),
    ("play the song", 2),
    ("play a music", 2),
    ("what song is the music", 2),
]
TEXTS = ["book a flight", "what is the weather like", "play my song", "rain and sun", "the hotel", "music to play"]

# Runs in the venv: labels of optimum's model and of transformers' pipeline, as JSON on stdout.
CLIENT = """
import json, sys
import optimum.onnxruntime, transformers
from optimum.onnxruntime import ORTModelForSequenceClassification
from transformers import AutoTokenizer, pipeline

folder, graphs, texts = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
tokenizer = AutoTokenizer.from_pretrained(folder)
result = {"transformers": transformers.__version__, "graphs": {}}
for graph in graphs:
    model = ORTModelForSequenceClassification.from_pretrained(folder, file_name=graph)
    ids = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).tolist()
    classify = pipeline("text-classification", model=model, tokenizer=tokenizer)
    result["graphs"][graph] = {
        "optimum": [model.config.id2label[i] for i in ids],
        "pipeline": [row["label"] for row in classify(texts)],
    }
print("RESULT " + json.dumps(result))
"""


def ensure_venv(venv: Path) -> Path:
    """The venv's python, after creating the venv and installing optimum-onnx where that was not done yet."""
    python = venv / "bin" / "python"
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import optimum.onnxruntime"], capture_output=True)
    if probe.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", REQUIREMENT], check=True)
    return python


def train(model: torch.nn.Module, tokenizer, steps: int = 30, lr: float = 1e-3) -> torch.nn.Module:
    """A few full-batch Adam steps on :data:`TRAIN`, so predictions differ between texts."""
    torch.manual_seed(0)
    inputs = tokenizer([t for t, _ in TRAIN], padding=True, return_tensors="pt")
    labels = torch.tensor([y for _, y in TRAIN])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(model(**inputs).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def build_models(work: Path, minilm: Path | None) -> dict[str, tuple[torch.nn.Module, object]]:
    from tiny_text import write_bert, write_tokenizer
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(work / "tokenizer"))
    tiny = AutoModelForSequenceClassification.from_pretrained(write_bert(work / "bert", labels=INTENTS))
    models = {"tiny-bert": (train(tiny, tokenizer, lr=1e-2), tokenizer)}
    if minilm is not None and minilm.is_dir():
        from lightning_distill.core.models import TransformerClassifier

        model = TransformerClassifier(str(minilm), id2label=dict(enumerate(INTENTS)))
        tokenizer = AutoTokenizer.from_pretrained(str(minilm))
        models["minilm-l6"] = (train(model, tokenizer, steps=20, lr=1e-4), tokenizer)
    return models


def compare(python: Path, name: str, model, tokenizer, work: Path) -> dict:
    """Export ``model``, label :data:`TEXTS` with our loader and, in the venv, with optimum and its pipeline."""
    import transformers

    from lightning_distill.core.export import GRAPH_FILES, export_text_classifier, load_exported

    folder = work / name
    export_text_classifier(model, tokenizer, folder, TEXTS, max_length=32, provenance={"script": Path(__file__).name})
    graphs = list(GRAPH_FILES.values())
    ours = {graph: load_exported(folder, graph)(TEXTS) for graph in graphs}
    run = subprocess.run(
        [str(python), "-c", CLIENT, str(folder), json.dumps(graphs), json.dumps(TEXTS)],
        capture_output=True,
        text=True,
    )
    line = next((x for x in run.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        return {"loaded": False, "error": run.stderr[-3000:]}
    theirs = json.loads(line[len("RESULT ") :])
    rows = {
        graph: {
            "lightning_distill": ours[graph],
            **theirs["graphs"][graph],
            "equal": ours[graph] == theirs["graphs"][graph]["optimum"] == theirs["graphs"][graph]["pipeline"],
        }
        for graph in graphs
    }
    return {
        "loaded": True,
        "files": sorted(p.name for p in folder.iterdir()),
        "project_transformers": transformers.__version__,
        "venv_transformers": theirs["transformers"],
        "all_equal": all(r["equal"] for r in rows.values()),
        "graphs": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=VENV, help="virtual environment of optimum-onnx")
    parser.add_argument("--minilm", type=Path, default=MINILM, help="MiniLM folder (skipped when missing)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    python = ensure_venv(args.venv)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        results = {name: compare(python, name, m, t, work) for name, (m, t) in build_models(work, args.minilm).items()}
    report = {"requirement": REQUIREMENT, "texts": TEXTS, "models": results}
    write_result(args.output, report)
    for name, result in results.items():
        print(f"{name}: loaded by optimum {result['loaded']}, labels equal {result.get('all_equal')}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
