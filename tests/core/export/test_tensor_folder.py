"""Export folders of image and tensor classifiers: the files written, loading them back, and what is refused."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_cnn import ResidualCNN

from lightning_distill.core.export import (
    ExportedTensorClassifier,
    OrtQuantConfig,
    export_tensor_classifier,
    load_exported,
)
from lightning_distill.core.export.integrity import ExportMismatchError

LABELS = {0: "cat", 1: "dog", 2: "bird"}
GRAY = {
    "image_mode": "L",
    "size": {"height": 12, "width": 12},
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": [0.5],
    "image_std": [0.25],
}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[ResidualCNN, torch.Tensor, Path]:
    torch.manual_seed(0)
    model, inputs = ResidualCNN().eval(), torch.randn(16, 1, 12, 12)
    folder = tmp_path_factory.mktemp("tensor_export") / "cnn"
    export_tensor_classifier(model, folder, inputs, id2label=LABELS, preprocessing=GRAY)
    return model, inputs, folder


def test_the_folder_holds_graphs_config_preprocessor_and_card(exported) -> None:
    _, _, folder = exported
    names = sorted(p.name for p in folder.iterdir())
    assert names == [
        "README.md",
        "config.json",
        "export_info.json",
        "model.onnx",
        "model_quantized.onnx",
        "preprocessor_config.json",
    ]
    config = json.loads((folder / "config.json").read_text())
    assert config["id2label"] == {"0": "cat", "1": "dog", "2": "bird"} and config["label2id"]["dog"] == 1
    assert config["input_shape"] == [1, 12, 12] and config["input_dtype"] == "float32" and config["num_labels"] == 3
    assert config["architectures"] == ["ResidualCNN"] and config["input_name"] == "input"
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    assert processor["image_mean"] == [0.5] and processor["size"] == {"height": 12, "width": 12}
    info = json.loads((folder / "export_info.json").read_text())
    assert info["quantization"]["mode"] == "static" and "model_quantized.onnx" in info["files"]
    card = (folder / "README.md").read_text()
    assert "input of shape [1, 12, 12]" in card and "(cat, dog, bird)" in card and "int8 (static)" in card


def test_load_exported_takes_tensors_arrays_and_pil_images(exported) -> None:
    model, inputs, folder = exported
    expected = model(inputs).detach().numpy()
    fp32 = load_exported(folder, "model.onnx")
    assert isinstance(fp32, ExportedTensorClassifier)
    np.testing.assert_allclose(fp32.logits(inputs), expected, atol=1e-5)
    np.testing.assert_allclose(fp32.logits(inputs[3].numpy()), expected[3:4], atol=1e-5)  # one example
    assert fp32(inputs) == [LABELS[int(i)] for i in expected.argmax(-1)]
    int8 = load_exported(folder)
    assert np.abs(int8.logits(inputs) - expected).max() < 0.05
    # an image goes through preprocessor_config.json: converted to L, resized to 12x12, rescaled, normalized
    pixels = np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    image = Image.fromarray(pixels, "RGB")
    gray = np.asarray(image.convert("L").resize((12, 12), Image.Resampling.BILINEAR), np.float32)
    by_hand = torch.from_numpy((gray / 255 - 0.5) / 0.25)[None, None]
    np.testing.assert_allclose(fp32.logits(image), model(by_hand).detach().numpy(), atol=1e-4)
    assert fp32([image, image]) == fp32(by_hand) * 2


def test_wrong_inputs_name_the_expected_shape(exported) -> None:
    _, _, folder = exported
    classify = load_exported(folder, "model.onnx")
    with pytest.raises(ValueError, match=r"shape \[2, 12, 12\] do not fit the model, which takes \[1, 12, 12\]"):
        classify(torch.randn(2, 12, 12))
    with pytest.raises(TypeError, match="pass a torch tensor or numpy array of shape"):
        classify("a text")
    with pytest.raises(ValueError, match="empty list"):
        classify([])


def test_a_folder_without_preprocessing_refuses_images(tmp_path: Path) -> None:
    model = ResidualCNN().eval()
    export_tensor_classifier(model, tmp_path / "out", torch.randn(4, 1, 8, 8), id2label=LABELS, graphs=["fp32"])
    assert not (tmp_path / "out" / "preprocessor_config.json").exists()
    classify = load_exported(tmp_path / "out", "model.onnx")
    with pytest.raises(ValueError, match=r"has no preprocessor_config\.json.*pass tensors of shape \[1, 8, 8\]"):
        classify(Image.new("L", (8, 8)))


def test_bad_arguments_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    model, inputs, folder = ResidualCNN().eval(), torch.randn(4, 1, 12, 12), tmp_path / "out"
    with pytest.raises(ValueError, match=r"must be a non-empty list of \['fp32', 'optimized', 'int8'\]"):
        export_tensor_classifier(model, folder, inputs, id2label=LABELS, graphs=["int8_emb4"])
    with pytest.raises(ValueError, match=r"the model predicts 3 classes"):
        export_tensor_classifier(model, folder, inputs, id2label={0: "a", 1: "b"})
    with pytest.raises(ValueError, match=r"28x28 \(784 values\).*\[1, 12, 12\]"):
        export_tensor_classifier(
            model, folder, inputs, id2label=LABELS, preprocessing={**GRAY, "size": {"height": 28, "width": 28}}
        )
    with pytest.raises(ValueError, match="embedding_bits=None"):
        export_tensor_classifier(model, folder, inputs, id2label=LABELS, quantization=OrtQuantConfig(embedding_bits=4))
    with pytest.raises(ValueError, match="non-empty batch tensor"):
        export_tensor_classifier(model, folder, inputs[0, 0, 0], id2label=LABELS)
    assert not folder.exists()


def test_foreign_folders_are_refused_and_graphs_of_other_exports_detected(exported, tmp_path: Path) -> None:
    model, inputs, first = exported
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=r"mine' is not empty \(notes\.txt\)"):
        export_tensor_classifier(model, mine, inputs, id2label=LABELS)
    assert (mine / "notes.txt").read_text() == "keep"
    other = tmp_path / "other"
    export_tensor_classifier(model, other, inputs, id2label={0: "x", 1: "y", 2: "z"}, graphs=["fp32"])
    # a graph copied in from another export
    (other / "model_quantized.onnx").write_bytes((first / "model_quantized.onnx").read_bytes())
    with pytest.raises(ExportMismatchError, match=r"model_quantized\.onnx' is not part of the export"):
        load_exported(other, "model_quantized.onnx")


def test_normalization_without_a_mean_or_std_is_refused(tmp_path: Path) -> None:
    model, inputs, folder = ResidualCNN().eval(), torch.randn(4, 1, 12, 12), tmp_path / "out"
    no_std = {k: v for k, v in GRAY.items() if k not in ("image_std", "do_normalize")}
    with pytest.raises(ValueError, match=r"normalizes images .* has no image_std: give both image_mean and image_std"):
        export_tensor_classifier(model, folder, inputs, id2label=LABELS, preprocessing=no_std)
    no_mean = {k: v for k, v in GRAY.items() if k not in ("image_mean", "image_std")}
    with pytest.raises(ValueError, match=r"do_normalize is True\) but has no image_mean and no image_std"):
        export_tensor_classifier(model, folder, inputs, id2label=LABELS, preprocessing=no_mean)
    assert not folder.exists()


def test_a_preprocessor_config_without_its_std_is_refused_when_loaded(tmp_path: Path) -> None:
    from lightning_distill.core.cache_files import file_sha256

    folder = tmp_path / "out"
    export_tensor_classifier(
        ResidualCNN().eval(), folder, torch.randn(4, 1, 12, 12), id2label=LABELS, graphs=["fp32"], preprocessing=GRAY
    )
    processor = json.loads((folder / "preprocessor_config.json").read_text())
    del processor["image_std"]
    (folder / "preprocessor_config.json").write_text(json.dumps(processor))
    info = json.loads((folder / "export_info.json").read_text())  # as the export itself had written it
    info["files"]["preprocessor_config.json"] = file_sha256(folder / "preprocessor_config.json")
    (folder / "export_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"preprocessor_config\.json' cannot turn images .*has no image_std"):
        load_exported(folder, "model.onnx")


def test_only_channels_first_inputs_take_images(tmp_path: Path) -> None:
    rgb = {"image_mode": "RGB", "size": {"height": 4, "width": 5}, "image_mean": [0.5] * 3, "image_std": [0.25] * 3}
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(60, 3)).eval()
    with pytest.raises(ValueError, match=r"\[3, 4, 5\] or \[60\], but the model takes inputs of shape \[4, 5, 3\]"):
        export_tensor_classifier(mlp, tmp_path / "hwc", torch.randn(2, 4, 5, 3), id2label=LABELS, preprocessing=rgb)
    assert not (tmp_path / "hwc").exists()
    # flat inputs are channels first flattened: an image gives the logits of its [3, 4, 5] pixels, flattened
    export_tensor_classifier(
        mlp, tmp_path / "flat", torch.randn(2, 60), id2label=LABELS, preprocessing=rgb, graphs=["fp32"]
    )
    pixels = np.random.default_rng(0).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    by_hand = torch.from_numpy((pixels / 255 - 0.5) / 0.25).float().permute(2, 0, 1).reshape(1, 60)
    classify = load_exported(tmp_path / "flat", "model.onnx")
    np.testing.assert_allclose(classify.logits(Image.fromarray(pixels, "RGB")), mlp(by_hand).detach(), atol=1e-5)


def test_a_preprocessor_config_copied_into_an_export_without_one_is_refused(exported, tmp_path: Path) -> None:
    model, inputs, first = exported
    bare = tmp_path / "bare"
    export_tensor_classifier(model, bare, inputs, id2label=LABELS, graphs=["fp32"])
    (bare / "preprocessor_config.json").write_bytes((first / "preprocessor_config.json").read_bytes())
    with pytest.raises(ExportMismatchError, match=r"preprocessor_config\.json' is not part of the export"):
        load_exported(bare, "model.onnx")


def test_calibration_inputs_must_fit_the_example_shape(tmp_path: Path) -> None:
    model, inputs = ResidualCNN().eval(), torch.randn(4, 1, 12, 12)
    with pytest.raises(
        ValueError, match=r"calibration_inputs must be a non-empty batch of inputs of shape \[1, 12, 12\]"
    ):
        export_tensor_classifier(model, tmp_path / "out", inputs, id2label=LABELS, calibration_inputs=inputs[:, 0])
    with pytest.raises(ValueError, match=r"calibration_inputs must be a non-empty batch"):
        export_tensor_classifier(model, tmp_path / "out", inputs, id2label=LABELS, calibration_inputs=inputs[:0])
