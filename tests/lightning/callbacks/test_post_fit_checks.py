"""The post-fit callbacks check what they need before the first training step, find the model in any
LightningModule, and load every artifact back before reporting it as saved."""

import json

import lightning.pytorch as pl
import pytest
import torch
from conftest import tiny_trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.export import create_session
from lightning_distill.core.models import MLP
from lightning_distill.core.quantization import (
    BitsAndBytesConfig,
    DynamicQuantConfig,
    QATConfig,
    StaticQuantConfig,
    load_quantized,
    quantize,
)
from lightning_distill.lightning.callbacks import OnnxExport, PostTrainingQuantization, QuantizationAwareTraining
from lightning_distill.lightning.callbacks._post_fit import ArtifactCheckError, save_checked_quantized
from lightning_distill.lightning.modules import ClassifierModule


def loader(n: int = 64, batch_size: int = 16, seed: int = 1) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 20, generator=generator)
    return DataLoader(TensorDataset(x, x[:, :3].argmax(1)), batch_size=batch_size)


def mlp() -> MLP:
    return MLP(num_classes=3, in_features=20, hidden_sizes=[16])


def snapshot(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_unchanged(module: nn.Module, before: dict[str, torch.Tensor]) -> None:
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "a training step ran before the error"


class NetModule(pl.LightningModule):
    """A user's own LightningModule: the network in ``self.net``, a loss module beside it."""

    def __init__(self, net: nn.Module | None = None) -> None:
        super().__init__()
        self.net = net if net is not None else mlp()
        self.loss_fn = nn.CrossEntropyLoss()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return self.loss_fn(self(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val/loss", self.loss_fn(self(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


# --- item 5: what a callback needs is checked in setup, before any training step ------------------------------------


@pytest.mark.parametrize(
    "callback",
    [OnnxExport(quantization=None), PostTrainingQuantization(StaticQuantConfig(calibration_batches=1))],
    ids=["OnnxExport", "PostTrainingQuantization-static"],
)
def test_no_validation_data_fails_before_training(callback, tmp_path):
    module = ClassifierModule(mlp(), learning_rate=0.1)
    before = snapshot(module)
    trainer = tiny_trainer(callbacks=[callback], default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=f"{type(callback).__name__} needs validation batches .* this fit has none"):
        trainer.fit(module, loader())
    assert_unchanged(module, before)
    assert trainer.global_step == 0


@pytest.mark.parametrize(
    "callback",
    [
        OnnxExport(quantization=None, dirname="blocked"),
        PostTrainingQuantization(DynamicQuantConfig(), dirname="blocked"),
        QuantizationAwareTraining(dirname="blocked"),
    ],
    ids=["OnnxExport", "PostTrainingQuantization", "QuantizationAwareTraining"],
)
def test_unwritable_artifact_folder_fails_before_training(callback, tmp_path):
    (tmp_path / "blocked").write_text("a file where the artifact folder should go")
    module = ClassifierModule(mlp(), learning_rate=0.1)
    before = {k: v for k, v in snapshot(module).items() if "activation_post_process" not in k}
    trainer = tiny_trainer(callbacks=[callback], default_root_dir=tmp_path)
    with pytest.raises(OSError, match=f"{type(callback).__name__} cannot write its artifacts to .*blocked"):
        trainer.fit(module, loader(), loader(seed=2))
    assert_unchanged(module, before)
    assert trainer.global_step == 0


def test_dynamic_quantization_of_a_model_without_linear_layers_fails_before_training(tmp_path):
    net = nn.Sequential(nn.Unflatten(1, (1, 4, 5)), nn.Conv2d(1, 3, 3), nn.Flatten(), nn.Linear(18, 3))
    module = NetModule(net)
    before = snapshot(module)
    trainer = tiny_trainer(
        callbacks=[PostTrainingQuantization(DynamicQuantConfig(skip_modules=["3"]))], default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match=r"would quantize no layer .*1 \(Conv2d\): Conv2d not supported by dynamic"):
        trainer.fit(module, loader(), loader(seed=2))
    assert_unchanged(module, before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_bitsandbytes_on_a_missing_gpu_fails_before_training(tmp_path):
    module = ClassifierModule(mlp(), learning_rate=0.1)
    before = snapshot(module)
    trainer = tiny_trainer(
        callbacks=[PostTrainingQuantization(BitsAndBytesConfig(device="cuda"))], default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match="torch sees no CUDA device"):
        trainer.fit(module, loader(), loader(seed=2))
    assert_unchanged(module, before)


# --- item 6: model_attribute finds the model in any LightningModule ----------------------------------------------


@pytest.mark.parametrize("model_attribute", ["net", "auto"])
def test_a_module_holding_self_net_exports(model_attribute, tmp_path):
    torch.manual_seed(0)
    module = NetModule()
    callback = OnnxExport(quantization=None, optimize=False, checkpoint="last", model_attribute=model_attribute)
    tiny_trainer(callbacks=[callback], default_root_dir=tmp_path).fit(module, loader(), loader(seed=2))
    report = json.loads((tmp_path / "onnx" / "export.json").read_text())
    assert report["model_attribute"] == "net" and report["parity"]["max_abs_diff"] <= 1e-4
    assert [i.shape for i in create_session(tmp_path / "onnx" / "model.onnx").get_inputs()] == [["batch", 20]]


def test_dotted_path_and_the_lightning_module_itself(tmp_path):
    torch.manual_seed(0)
    module = NetModule(nn.Sequential(nn.Flatten(), mlp()))
    dotted = PostTrainingQuantization(DynamicQuantConfig(), checkpoint="last", model_attribute="net.1", dirname="a")
    itself = OnnxExport(quantization=None, optimize=False, checkpoint="last", model_attribute="self", dirname="b")
    tiny_trainer(callbacks=[dotted, itself], default_root_dir=tmp_path).fit(module, loader(), loader(seed=2))
    reloaded = load_quantized(dotted.artifact_path, mlp())  # the artifact is the MLP at net.1
    x = next(iter(loader(seed=3)))[0]
    with torch.no_grad():
        assert (reloaded(x) - module.net[1].eval()(x)).abs().max() <= 0.05
    assert json.loads((tmp_path / "b" / "export.json").read_text())["model_attribute"] == "self"


def test_auto_with_two_candidate_networks_lists_the_children_before_training(tmp_path):
    class TwoNets(NetModule):
        def __init__(self) -> None:
            super().__init__()
            self.head = nn.Linear(3, 3)

    module = TwoNets()
    before = snapshot(module)
    trainer = tiny_trainer(callbacks=[OnnxExport(quantization=None)], default_root_dir=tmp_path)
    with pytest.raises(ValueError, match=r"found 2: net, head\. .*net \(MLP\), loss_fn \(CrossEntropyLoss\), head"):
        trainer.fit(module, loader(), loader(seed=2))
    assert_unchanged(module, before)


def test_a_missing_attribute_names_the_children(tmp_path):
    trainer = tiny_trainer(
        callbacks=[PostTrainingQuantization(model_attribute="backbone.encoder")], default_root_dir=tmp_path
    )
    with pytest.raises(ValueError, match=r"'backbone.encoder' names no submodule .* net \(MLP\), loss_fn"):
        trainer.fit(NetModule(), loader(), loader(seed=2))


# --- item 7: a saved artifact is loaded back and run before it is reported ---------------------------------------


def test_qat_on_a_top_level_sequential_saves_an_artifact_that_runs(tmp_path):
    def sequential() -> nn.Sequential:
        return nn.Sequential(nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3))

    torch.manual_seed(0)
    module = ClassifierModule(sequential(), learning_rate=0.05)
    qat = QuantizationAwareTraining()
    tiny_trainer(max_epochs=2, callbacks=[qat], default_root_dir=tmp_path).fit(module, loader(), loader(seed=2))
    in_memory = quantize(module.model, QATConfig(step="convert"))
    reloaded = load_quantized(qat.artifact_path, sequential())
    x = next(iter(loader(seed=3)))[0]
    with torch.no_grad():
        expected, actual = in_memory(x), reloaded(x)
        float_logits = module.model.eval()(x)
    assert torch.equal(actual, expected)
    assert (actual.argmax(-1) == float_logits.argmax(-1)).float().mean() >= 0.9
    summary = json.loads((tmp_path / "quantized" / "qat_int8.report.json").read_text())
    assert [(layer["name"], layer["status"]) for layer in summary["layers"]] == [("0", "quantized"), ("2", "quantized")]


def test_qat_without_validation_data_checks_its_artifact_on_a_training_batch(tmp_path):
    qat = QuantizationAwareTraining()
    tiny_trainer(callbacks=[qat], default_root_dir=tmp_path).fit(ClassifierModule(mlp()), loader())
    summary = json.loads((tmp_path / "quantized" / "qat_int8.report.json").read_text())
    assert summary["checked_on"] == "one training batch, reloaded from disk"


def test_a_file_that_does_not_reload_is_named_and_set_aside(tmp_path):
    torch.manual_seed(0)
    quantized = quantize(mlp().eval(), DynamicQuantConfig())
    batch = (next(iter(loader()))[0], "validation")
    wrong_architecture = MLP(num_classes=3, in_features=20, hidden_sizes=[16, 16])
    path = tmp_path / "dynamic_qint8.pt"
    with pytest.raises(ArtifactCheckError, match=r"Owner wrote .*dynamic_qint8.pt.*does not fit the given MLP"):
        save_checked_quantized("Owner", quantized, wrong_architecture, path, batch)
    assert not path.exists() and (tmp_path / "dynamic_qint8.pt.broken").is_file()


def test_a_file_that_reloads_to_different_logits_is_refused(tmp_path):
    class Doubled(MLP):  # same weights and names, another forward
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * super().forward(x)

    torch.manual_seed(0)
    quantized = quantize(mlp().eval(), DynamicQuantConfig())
    other = Doubled(num_classes=3, in_features=20, hidden_sizes=[16])
    with pytest.raises(ArtifactCheckError, match="logits differ from the in-memory quantized model's"):
        save_checked_quantized("Owner", quantized, other, tmp_path / "q.pt", (next(iter(loader()))[0], "training"))


def test_ptq_writes_the_per_layer_summary_beside_the_artifact(tmp_path):
    torch.manual_seed(0)
    callback = PostTrainingQuantization(DynamicQuantConfig(skip_modules=["classifier"]), checkpoint="last")
    module = ClassifierModule(mlp(), learning_rate=0.1)
    tiny_trainer(callbacks=[callback], default_root_dir=tmp_path).fit(module, loader(), loader(seed=2))
    summary = json.loads((tmp_path / "quantized" / "dynamic_qint8.report.json").read_text())
    assert summary["artifact"] == "dynamic_qint8.pt" and summary["num_quantized"] == 1
    layers = {layer["name"]: layer for layer in summary["layers"]}
    assert layers["hidden.0"]["status"] == "quantized"
    assert layers["classifier"]["reason"] == "excluded by skip_modules pattern 'classifier'"
    assert callback.report.quantized == ["hidden.0"]
