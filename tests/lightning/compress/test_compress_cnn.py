"""compress with the cnn family: a tiny CNN teacher on MNIST (mnist10k), SmallCNN students narrowed by channel sparsity,
ONNX Runtime static int8, and the chosen export folder."""

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import MNIST10K, ROOT

from lightning_distill.core.export import load_exported
from lightning_distill.core.models import SmallCNN
from lightning_distill.lightning.compress import (
    Budget,
    CompressConfig,
    CompressConfigError,
    Dimension,
    Teacher,
    Trials,
    check_search_space,
    compress,
    load_compress_config,
)
from lightning_distill.lightning.compress.space import pruned_widths
from lightning_distill.lightning.data import MNISTDataModule

DATA = {
    "class_path": "lightning_distill.lightning.data.MNISTDataModule",
    "init_args": {"root": str(MNIST10K), "download": False, "batch_size": 128, "seed": 0},
}
BASE = {"class_path": "lightning_distill.core.models.SmallCNN", "init_args": {"widths": [8, 16]}}


def _teacher_yaml(folder: Path) -> Path:
    """A SmallCNN teacher (16/32 channels) fit for a few batches: the search fits it once."""
    fit = {
        "seed_everything": 0,
        "model": {
            "class_path": "lightning_distill.lightning.modules.ClassifierModule",
            "init_args": {
                "model": {"class_path": "lightning_distill.core.models.SmallCNN", "init_args": {"widths": [16, 32]}},
                "learning_rate": 0.01,
            },
        },
        "data": DATA,
        "trainer": {
            "max_epochs": 1,
            "limit_train_batches": 20,
            "logger": False,
            "callbacks": [
                {
                    "class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
                    "init_args": {"monitor": "val/acc", "mode": "max", "filename": "best"},
                }
            ],
        },
    }
    path = folder / "teacher.yaml"
    path.write_text(yaml.safe_dump(fit))
    return path


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("compress_cnn")
    config = CompressConfig(
        teacher=Teacher(config=str(_teacher_yaml(root))),
        data=DATA,
        family="cnn",
        student=BASE,
        search_space={
            "channel_sparsity": Dimension("channel_sparsity", choices=(0.25, 0.5)),
            "int8": Dimension("int8", choices=("ort_static",)),
        },
        budget=Budget(size_ratio=0.6, max_drop_points=50.0),
        trials=Trials(n_trials=2),
        max_epochs=1,
        limit_train_batches=10,
        output_dir=str(root / "out"),
        query_sample=8,
        latency_turns=1,
    )
    return {"config": config, "result": compress(config)}


def test_cnn_students_are_the_base_narrowed_by_channel_sparsity(searched: dict) -> None:
    config = searched["config"]
    for record in searched["result"].records:
        folder = Path(record["artifact"]).parent.parent
        spec = json.loads((folder / "student.json").read_text())
        widths = pruned_widths([8, 16], record["settings"]["channel_sparsity"])
        assert widths == {0.25: [6, 12], 0.5: [4, 8]}[record["settings"]["channel_sparsity"]]
        assert spec["init_args"]["widths"] == widths
        weights = torch.load(folder / "student.pt", weights_only=True)
        assert weights["features.1.0.weight"].shape[:2] == (widths[1], widths[0])
        assert Path(record["artifact"]).name == "model_quantized.onnx"  # ort_static: the export folder's int8 graph
    assert (config.output / "teacher_cache").is_dir()


def test_the_chosen_cnn_folder_predicts_as_measured_and_states_the_budget(searched: dict) -> None:
    config, result = searched["config"], searched["result"]
    assert result.chosen is not None, result.message
    classify = load_exported(config.output / "chosen", graph="model_quantized.onnx")
    data = MNISTDataModule(root=str(MNIST10K), download=False, batch_size=128, seed=0)
    data.setup("fit")
    inputs, labels = data.benchmark_data("val")
    predicted = classify.predict_ids(data.encode(inputs))
    val_accuracy = sum(int(p == y) for p, y in zip(predicted, labels.tolist(), strict=True)) / len(labels)
    assert val_accuracy == pytest.approx(result.chosen["val_accuracy"], abs=0.002)
    card = (config.output / "chosen/README.md").read_text()
    assert "size_ratio <= 0.6, max_drop_points <= 50" in card and "figures are for: `model_quantized.onnx" in card
    assert result.chosen["size_ratio"] <= 0.6


def test_a_base_student_without_widths_is_refused_for_the_cnn_family() -> None:
    base = {"class_path": "lightning_distill.core.models.MLP", "init_args": {"hidden_sizes": [8]}}
    with pytest.raises(CompressConfigError, match=r"student.init_args.widths must list the channels of each stage"):
        check_search_space("cnn", {}, base)


def test_the_mnist_cnn_compress_config_names_the_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    config = load_compress_config("configs/mnist_cnn/compress.yaml")
    assert config.family == "cnn" and config.teacher.config == "configs/mnist_cnn/teacher.yaml"
    assert config.budget.size_ratio == 0.05 and config.budget.max_drop_points == 0.5
    data = config.data["init_args"]
    assert data["root"] == "../shared/data/mnist10k" and data["download"] is False
    check_search_space(config.family, config.search_space, config.student)


def test_a_given_student_checkpoint_is_pruned_by_importance_and_then_distil_finetuned(
    searched: dict, tmp_path: Path
) -> None:
    torch.manual_seed(0)
    base = SmallCNN(num_classes=10, in_channels=1, widths=[8, 16])
    with torch.no_grad():  # channels 0..3 of the first stage carry the largest weights: L1 pruning keeps exactly them
        base.features[0][0].weight.mul_(0.01)
        base.features[0][0].weight[:4].mul_(1000.0)
    checkpoint = tmp_path / "student.pt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in base.state_dict().items()}}, checkpoint)
    teacher = json.loads((searched["config"].output / "teacher/teacher.json").read_text())["checkpoint"]
    config = searched["config"].replace(
        teacher=Teacher(config=searched["config"].teacher.config, checkpoint=teacher),
        student_checkpoint=str(checkpoint),
        search_space={
            "channel_sparsity": Dimension("channel_sparsity", choices=(0.5,)),
            "learning_rate": Dimension("learning_rate", choices=(1e-9,)),  # the fit keeps the start's weights
            "int8": Dimension("int8", choices=("none",)),
        },
        trials=Trials(n_trials=1),
        limit_train_batches=1,
        output_dir=str(tmp_path / "out"),
    )
    result = compress(config)
    folder = Path(result.records[0]["artifact"]).parent.parent
    start = torch.load(folder / "start.pt", weights_only=True)
    assert start["features.0.0.weight"].shape[0] == 4 and start["features.1.0.weight"].shape[:2] == (8, 4)
    assert torch.equal(start["features.0.0.weight"], base.features[0][0].weight[:4])  # the important channels
    trained = torch.load(folder / "student.pt", weights_only=True)
    assert torch.allclose(trained["features.0.0.weight"], start["features.0.0.weight"], atol=1e-6)


def test_a_student_checkpoint_of_another_model_is_refused_by_name(searched: dict, tmp_path: Path) -> None:
    checkpoint = tmp_path / "other.pt"
    torch.save(SmallCNN(widths=[4]).state_dict(), checkpoint)
    config = searched["config"].replace(student_checkpoint=str(checkpoint), output_dir=str(tmp_path / "out"))
    with pytest.raises(CompressConfigError, match=r"holds no weights of the base student \(SmallCNN"):
        compress(config)
    assert not (tmp_path / "out").exists()  # refused before the teacher's fit
