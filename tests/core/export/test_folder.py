"""Export folders (optimum's layout) of a tiny BERT classifier, loaded back by ``load_exported``; execution providers
and ONNX Runtime quantization presets."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tiny_text import INTENTS, write_bert, write_tokenizer

from lightning_distill.core.export import (
    GRAPH_FILES,
    OrtQuantConfig,
    OrtSessionConfig,
    add_measurements,
    export_text_classifier,
    hub_files,
    load_exported,
    quantize_onnx,
)

TEXTS = [
    "book a flight to the sun",
    "what is the weather",
    "play the song",
    "rain rain rain",
    "hotel music",
    "is the flight a song",
    "sun weather to play",
    "a",
]
LABELS = [0, 1, 2, 1, 0, 2, 1, 0]


def classifier(folder: Path, tokenizer):
    """A tiny BERT classifier of the three intents, trained a few steps on :data:`TEXTS` so its predictions differ
    between texts (a random one predicts one class for all) by margins that int8 keeps."""
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(write_bert(folder, labels=INTENTS))
    inputs = tokenizer(TEXTS, padding=True, return_tensors="pt")
    labels = torch.tensor(LABELS)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(model(**inputs).logits, labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("export")
    tokenizer = AutoTokenizer.from_pretrained(write_tokenizer(root / "tokenizer"))
    model = classifier(root / "bert", tokenizer)
    export_text_classifier(model, tokenizer, root / "folder", TEXTS[:4], max_length=16, provenance={"by": "a test"})
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    return root / "folder", model, tokenizer, logits


def test_folder_holds_optimums_files_with_the_real_labels(exported) -> None:
    folder, _, _, _ = exported
    names = {p.name for p in folder.iterdir()}
    assert set(GRAPH_FILES.values()) | {"config.json", "tokenizer_config.json", "README.md"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "travel", "1": "weather", "2": "music"}
    assert config["label2id"] == {"travel": 0, "weather": 1, "music": 2}
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert json.loads((folder / "tokenizer_config.json").read_text())["model_max_length"] == 16
    card = (folder / "README.md").read_text()
    assert "travel, weather, music" in card and "`model_quantized.onnx`" in card and "by: `a test`" in card


@pytest.mark.parametrize("graph", list(GRAPH_FILES.values()))
def test_each_graph_loads_back_with_the_pytorch_models_labels(exported, graph: str) -> None:
    folder, _, _, logits = exported
    expected = [INTENTS[i] for i in logits.argmax(-1).tolist()]
    assert len(set(expected)) >= 2  # a constant predictor would agree with anything
    classify = load_exported(folder, graph)
    assert classify(TEXTS) == expected
    assert classify(TEXTS[1]) == [expected[1]]
    if graph in ("model.onnx", "model_optimized.onnx"):
        np.testing.assert_allclose(classify.logits(TEXTS), logits.numpy(), atol=1e-4)


def test_measurements_go_into_the_model_card(exported) -> None:
    folder = exported[0]
    add_measurements(folder, {"model_quantized.onnx": {"accuracy": 0.9375, "latency_ms_p50": 1.25, "num_threads": 1}})
    card = (folder / "README.md").read_text()
    row = next(line for line in card.splitlines() if line.startswith("| `model_quantized.onnx`"))
    assert "0.9375" in row and "1.25" in row
    with pytest.raises(ValueError, match=r"measurements of \['nothing.onnx'\]"):
        add_measurements(folder, {"nothing.onnx": {"accuracy": 1.0}})


def test_loading_a_missing_graph_or_folder_says_what_is_there(exported, tmp_path: Path) -> None:
    folder = exported[0]
    with pytest.raises(FileNotFoundError, match=r"holds no graph 'model_int4.onnx'; it holds \['model.onnx'"):
        load_exported(folder, "model_int4.onnx")
    with pytest.raises(FileNotFoundError, match=r"it has no config\.json"):
        load_exported(tmp_path)


def test_export_refuses_a_model_without_config_or_labels_that_do_not_fit(exported, tmp_path: Path) -> None:
    _, model, tokenizer, _ = exported
    with pytest.raises(ValueError, match="has no Hugging Face config"):
        export_text_classifier(torch.nn.Linear(2, 2), tokenizer, tmp_path, TEXTS)
    with pytest.raises(ValueError, match="id2label names 2 labels but the model predicts 3"):
        export_text_classifier(model, tokenizer, tmp_path, TEXTS, id2label={0: "a", 1: "b"})
    with pytest.raises(ValueError, match=r"graphs \['int4'\] must be"):
        export_text_classifier(model, tokenizer, tmp_path, TEXTS, graphs=["int4"])
    assert not list(tmp_path.iterdir())  # refused before anything was written


def _missing_provider() -> str:
    import onnxruntime as ort

    available = ort.get_available_providers()
    candidates = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "OpenVINOExecutionProvider"]
    missing = [p for p in candidates if p not in available]
    if not missing:
        pytest.skip("every candidate execution provider is installed here")
    return missing[0]


def test_a_provider_that_is_not_installed_is_refused_with_the_available_ones(exported) -> None:
    import onnxruntime as ort

    missing = _missing_provider()
    available = ort.get_available_providers()
    with pytest.raises(ValueError, match=rf"\['{missing}'\] are not installed") as error:
        load_exported(exported[0], session_config=OrtSessionConfig(providers=[missing, "CPUExecutionProvider"]))
    assert f"available here: {available}" in str(error.value)
    with pytest.raises(ValueError, match=r"\['CUDA'\] are no ONNX Runtime provider names"):
        OrtSessionConfig(providers=["CUDA"])
    session = load_exported(exported[0], session_config=OrtSessionConfig(providers=["CPUExecutionProvider"])).session
    assert session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize(("target", "weight_type"), [("avx2", 2), ("avx512_vnni", 3), ("arm64", 3)])
def test_hardware_presets_reach_onnx_runtime(exported, tmp_path: Path, target: str, weight_type: int) -> None:
    """avx2 stores uint8 MatMul weights (onnx.TensorProto.UINT8 = 2), the others int8 (INT8 = 3), all per channel.

    (ONNX Runtime stores the embedding tables, inputs of Gather, as uint8 whatever the weight type.)"""
    import onnx

    config = OrtQuantConfig.for_hardware(target)
    assert config.per_channel and not config.reduce_range and config.mode == "dynamic"
    path = quantize_onnx(exported[0] / "model.onnx", tmp_path / "q.onnx", config)
    graph = onnx.load(str(path)).graph
    weights = [
        t
        for t in graph.initializer
        if t.name.endswith("_quantized") and len(t.dims) == 2 and "embeddings" not in t.name
    ]
    assert weights and {t.data_type for t in weights} == {weight_type}
    scales = [t for t in graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1 and t.dims[0] > 1]
    assert scales  # per-channel: one scale per output channel


def test_bad_presets_and_quantization_types_are_refused() -> None:
    with pytest.raises(ValueError, match=r"no ONNX Runtime quantization preset 'avx3'; choose one of \['avx2'"):
        OrtQuantConfig.for_hardware("avx3")
    with pytest.raises(ValueError, match="activation_type must be 'uint8' with mode='dynamic'"):
        OrtQuantConfig(activation_type="int8")
    with pytest.raises(ValueError, match="weight_type must be 'int8' or 'uint8'"):
        OrtQuantConfig(weight_type="int4")


def test_hub_upload_would_send_the_whole_folder_and_refuses_other_folders(exported, tmp_path: Path) -> None:
    files = hub_files(exported[0])
    assert {"config.json", "README.md", "model_quantized.onnx", "tokenizer_config.json"} <= set(files)
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"lacks \['config.json', 'tokenizer_config.json'\]"):
        hub_files(tmp_path)
