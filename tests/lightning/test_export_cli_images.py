"""``lightning-distill export`` with the MNIST and MNIST-CNN configs, ``load_exported`` and ``benchmark --artifact``."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import MNIST10K, ROOT, tiny_trainer
from PIL import Image

from lightning_distill.core.export import ExportedTensorClassifier, load_exported
from lightning_distill.lightning.cli import DistillCLI
from lightning_distill.lightning.data.mnist import MNIST_MEAN, MNIST_STD
from lightning_distill.lightning.main import main

# The data offline, small batches, and no teacher checkpoint: export writes the student only.
OVERRIDES = [
    f"--data.root={MNIST10K}",
    "--data.download=false",
    "--data.batch_size=16",
    "--model.init_args.teacher_checkpoint=null",
]


@pytest.mark.parametrize("task", ["mnist", "mnist_cnn"])
def test_export_of_the_mnist_configs_loads_and_benchmarks(task: str, tmp_path: Path) -> None:
    config = str(ROOT / "configs" / task / "distill.yaml")
    cli = DistillCLI(args=["--config", config, *OVERRIDES], run=False)
    tiny_trainer(max_steps=1, limit_val_batches=0).fit(cli.model, cli.datamodule)
    ckpt = tmp_path / "trained.ckpt"
    torch.save({"state_dict": cli.model.state_dict()}, ckpt)
    folder, rows_file = tmp_path / "export", tmp_path / "rows.json"

    main(["export", "--config", config, *OVERRIDES, "--ckpt_path", str(ckpt), "--folder", str(folder)])
    assert sorted(p.name for p in folder.glob("*.json")) == [
        "config.json",
        "export_info.json",
        "preprocessor_config.json",
    ]
    assert json.loads((folder / "config.json").read_text())["input_shape"] == [1, 28, 28]
    # int8 calibrated on validation examples, not on the test split it is measured on
    info = json.loads((folder / "export_info.json").read_text())
    assert info["provenance"]["int8 calibrated on"] == "the first 32 examples of the 'val' split"
    classify = load_exported(folder, "model.onnx")
    assert isinstance(classify, ExportedTensorClassifier)
    cli.datamodule.setup("test")
    images = cli.datamodule.benchmark_data("test")[0][:8]
    student = cli.model.student.eval()
    np.testing.assert_allclose(classify.logits(images), student(images).detach().numpy(), atol=1e-4)
    # a PIL image of the first test digit, as MNIST stores it, gives that digit's logits
    pixels = (images[0, 0] * MNIST_STD + MNIST_MEAN).mul(255).round().clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_allclose(classify.logits(Image.fromarray(pixels, "L")), classify.logits(images[0]), atol=1e-4)

    bench = ["benchmark", "--config", config, *OVERRIDES, "--output", str(rows_file), "--iterations", "2"]
    main([*bench, "--artifact", str(folder), "--graph", "model.onnx", "--name", "fp32", "--warmup", "1"])
    main([*bench, "--artifact", str(folder), "--name", "int8", "--warmup", "1"])
    rows = {row["name"]: row for row in json.loads(rows_file.read_text())}
    assert rows["fp32"]["weights"] == rows["int8"]["weights"] == str(folder)
    assert rows["fp32"]["num_examples"] == len(cli.datamodule.benchmark_data("test")[1])
    assert abs(rows["int8"]["accuracy"] - rows["fp32"]["accuracy"]) < 0.05


def test_export_refuses_the_text_only_graph_for_an_image_model(tmp_path: Path) -> None:
    config = str(ROOT / "configs" / "mnist" / "distill.yaml")
    ckpt = tmp_path / "unused.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    export = ["export", "--config", config, *OVERRIDES, "--ckpt_path", str(ckpt), "--folder", str(tmp_path / "out")]
    with pytest.raises(ValueError, match="int8_emb4 quantizes a text model's embedding tables, but MNISTDataModule"):
        main([*export, "--graphs", "[int8_emb4]"])
    assert not (tmp_path / "out").exists()
