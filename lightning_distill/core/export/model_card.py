"""The model card (``README.md``) of an export folder, rendered from ``export_info.json`` beside it.

``export_info.json`` records how the folder was made (title, provenance, quantization settings, ``max_length``,
``last_layer``: how the last encoder layer was computed), what ties its files together (``format``, ``export_id`` and
the sha256 of each file, see :mod:`~lightning_distill.core.export.integrity`) and, once measured, each graph's benchmark
row, so the card can be rewritten when measurements arrive later.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_distill.core.atomic import write_json, write_text
from lightning_distill.core.export.layout import GRAPH_DESCRIPTIONS, GRAPH_FILES, served_graph, usage_lines

__all__ = ["EXPORT_INFO", "add_measurements", "read_export_info", "write_model_card"]

EXPORT_INFO = "export_info.json"


def read_export_info(folder: str | Path) -> dict[str, Any]:
    """The ``export_info.json`` of an export folder (empty when there is none)."""
    path = Path(folder) / EXPORT_INFO
    return json.loads(path.read_text()) if path.is_file() else {}


def write_model_card(folder: str | Path, info: Mapping[str, Any]) -> Path:
    """Write ``info`` to ``export_info.json`` and the model card it describes to ``README.md``; returns the card."""
    folder = Path(folder)
    write_json(folder / EXPORT_INFO, dict(info))
    return write_text(folder / "README.md", _render(folder, info))


def add_measurements(folder: str | Path, rows: Mapping[str, Mapping[str, Any]]) -> Path:
    """Add benchmark rows (``BenchmarkResult.to_dict()``, by graph file name) to the card and rewrite it.

    Raises:
        ValueError: a row names a graph the folder does not hold.
    """
    folder = Path(folder)
    missing = [name for name in rows if not (folder / name).is_file()]
    if missing:
        raise ValueError(f"measurements of {missing}, which {folder} does not hold")
    info = read_export_info(folder)
    info["measurements"] = {**info.get("measurements", {}), **{k: dict(v) for k, v in rows.items()}}
    return write_model_card(folder, info)


def _render(folder: Path, info: Mapping[str, Any]) -> str:
    config = json.loads((folder / "config.json").read_text())
    if "input_shape" in config:  # an image or tensor classifier (export_tensor_classifier)
        from lightning_distill.core.export.tensor_card import render_tensor_card

        return render_tensor_card(folder, config, info)
    labels = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    shown = ", ".join(labels[:8]) + (f", ... ({len(labels)} in all)" if len(labels) > 8 else "")
    architecture = (config.get("architectures") or [config.get("model_type", "transformer")])[0]
    measured = info.get("measurements", {})
    lines = [
        "---",
        "library_name: onnx",
        "pipeline_tag: text-classification",
        "tags: [onnx, text-classification, lightning-distill]",
        "---",
        "",
        f"# {info.get('title', architecture)}",
        "",
        f"A {architecture} ({config.get('num_hidden_layers', '?')} layers, hidden size "
        f"{config.get('hidden_size', config.get('dim', '?'))}) that classifies a text into {len(labels)} labels "
        f"({shown}), exported to ONNX by lightning-distill. The folder is laid out as optimum writes an export: "
        "`config.json` (labels in `id2label`), the tokenizer's files and the graphs below.",
        "",
        "| file | what | size (MB) | accuracy | latency p50 (ms) |",
        "|---|---|---|---|---|",
    ]
    for kind, name in GRAPH_FILES.items():
        if (folder / name).is_file():
            row = measured.get(name, {})
            accuracy = f"{row['accuracy']:.4f}" if "accuracy" in row else "not measured"
            latency = f"{row['latency_ms_p50']:.2f}" if "latency_ms_p50" in row else "not measured"
            size = (folder / name).stat().st_size / 1e6
            lines.append(f"| `{name}` | {GRAPH_DESCRIPTIONS[kind]} | {size:.2f} | {accuracy} | {latency} |")
    if measured:
        row = next(iter(measured.values()))
        lines += [
            "",
            f"Accuracy on {row.get('num_examples')} test texts; latency of one text (tokenization included) with "
            f"{row.get('num_threads')} intra-op thread(s), ONNX Runtime on {row.get('providers', ['CPU'])[0]}.",
        ]
    lines += _usage(served_graph(folder))
    lines += ["", "## How it was made", ""]
    lines += [f"- {key}: `{value}`" for key, value in info.get("provenance", {}).items()]
    if info.get("quantization"):
        settings = ", ".join(f"{k}={v}" for k, v in info["quantization"].items() if k not in ("calibration_batches",))
        lines.append(f"- int8 graphs: ONNX Runtime `quantize_dynamic` of `model.onnx` ({settings})")
    if info.get("last_layer"):
        lines.append(f"- the last encoder layer is computed for {info['last_layer']}")
    if info.get("max_length"):
        lines.append(f"- texts are truncated to {info['max_length']} tokens (`model_max_length` of the tokenizer)")
    return "\n".join(lines) + "\n"


def _usage(graph: str) -> list[str]:
    return [
        *usage_lines(graph, 'print(classify(["what is the weather like tomorrow"]))  # label names'),
        "```",
        "",
        "With optimum (`pip install optimum-onnx[onnxruntime]`) and transformers:",
        "",
        "```python",
        "from optimum.onnxruntime import ORTModelForSequenceClassification",
        "from transformers import AutoTokenizer, pipeline",
        "",
        f'model = ORTModelForSequenceClassification.from_pretrained("path/to/this/folder", file_name="{graph}")',
        'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
        'print(pipeline("text-classification", model=model, tokenizer=tokenizer)("what is the weather like"))',
        "```",
    ]
