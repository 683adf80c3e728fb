"""The model card (``README.md``) of an image or tensor classifier's export folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning_distill.core.export.layout import GRAPH_FILES, served_graph, usage_lines

_DESCRIPTIONS = {
    "fp32": "fp32, as exported from PyTorch (checked against PyTorch's logits)",
    "optimized": "fp32, optimized by ONNX Runtime (fused operators)",
    "int8": "ONNX Runtime int8 ({mode})",
}


def render_tensor_card(folder: Path, config: Mapping[str, Any], info: Mapping[str, Any]) -> str:
    """The card's text: what the model takes and predicts, each graph with its size and measurements, how to use it."""
    labels = [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    shown = ", ".join(labels[:8]) + (f", ... ({len(labels)} in all)" if len(labels) > 8 else "")
    architecture = (config.get("architectures") or ["classifier"])[0]
    preprocessor = (folder / "preprocessor_config.json").is_file()
    mode = (info.get("quantization") or {}).get("mode", "static")
    measured = info.get("measurements", {})
    lines = [
        "---",
        "library_name: onnx",
        f"pipeline_tag: {'image-classification' if preprocessor else 'tabular-classification'}",
        "tags: [onnx, lightning-distill]",
        "---",
        "",
        f"# {info.get('title', architecture)}",
        "",
        f"A {architecture} that classifies an input of shape {config['input_shape']} ({config['input_dtype']}) into "
        f"{len(labels)} labels ({shown}), exported to ONNX by lightning-distill. `config.json` names the labels "
        "(`id2label`) and the input"
        + (", `preprocessor_config.json` how an image becomes an input." if preprocessor else "."),
        "",
        "| file | what | size (MB) | accuracy | latency p50 (ms) |",
        "|---|---|---|---|---|",
    ]
    for kind, name in GRAPH_FILES.items():
        if kind in _DESCRIPTIONS and (folder / name).is_file():
            row = measured.get(name, {})
            accuracy = f"{row['accuracy']:.4f}" if "accuracy" in row else "not measured"
            latency = f"{row['latency_ms_p50']:.2f}" if "latency_ms_p50" in row else "not measured"
            size = (folder / name).stat().st_size / 1e6
            what = _DESCRIPTIONS[kind].format(mode=mode)
            lines.append(f"| `{name}` | {what} | {size:.2f} | {accuracy} | {latency} |")
    call = "print(classify(inputs))  # label names of a batch of model inputs (normalized as in training)"
    lines += usage_lines(served_graph(folder), call + (", or of PIL images" if preprocessor else ""))
    lines += [
        "```",
        "",
        "## How it was made",
        "",
    ]
    lines += [f"- {key}: `{value}`" for key, value in info.get("provenance", {}).items()]
    if info.get("quantization"):
        settings = ", ".join(f"{k}={v}" for k, v in info["quantization"].items() if k != "embedding_block_size")
        lines.append(f"- int8 graph: ONNX Runtime quantization of `model.onnx` ({settings})")
    return "\n".join(lines) + "\n"
