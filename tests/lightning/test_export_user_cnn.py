"""From a user's own LightningModule (its CNN in ``self.backbone``) to an export folder predicting in a fresh process.

Distilled from the user's checkpoint, pruned (and distilled on), exported with its int8 graph, loaded by
``load_exported`` in another Python process: the fp32 graph's logits equal the PyTorch student's within 1e-4, the int8
graph's within 0.05 with the same predicted class on at least 90% of the examples.
"""

import json
import subprocess
import sys
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from conftest import tiny_trainer
from PIL import Image
from tiny_cnn import ResidualCNN
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_distill.core.export import export_tensor_classifier
from lightning_distill.core.pruning import prune_structured
from lightning_distill.lightning.modules import DistillationModule

PREPROCESSING = {
    "image_mode": "L",
    "size": {"height": 12, "width": 12},
    "rescale_factor": 1 / 255,
    "image_mean": [0.5],
    "image_std": [0.5],
}

# Run in a fresh process: load the folder, predict on the saved inputs and on an image, write what it got.
PREDICT = """
import json, sys
import numpy as np
from PIL import Image
from lightning_distill.core.export import load_exported

folder, out = sys.argv[1], sys.argv[2]
inputs = np.load(f"{out}/inputs.npy")
result = {}
for graph in ("model.onnx", "model_quantized.onnx"):
    classify = load_exported(folder, graph)
    result[graph] = {"logits": classify.logits(inputs).tolist(), "labels": classify(inputs)}
result["image"] = load_exported(folder, "model.onnx").logits(Image.open(f"{out}/digit.png")).tolist()
with open(f"{out}/predicted.json", "w") as file:
    json.dump(result, file)
"""


class UserModule(pl.LightningModule):
    """A user's classifier: the CNN sits in ``self.backbone``."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ResidualCNN()

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return nn.functional.cross_entropy(self.backbone(batch[0]), batch[1])

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _data() -> TensorDataset:
    """Noisy images whose class is how bright they are: learnable in a few steps."""
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (96,), generator=generator)
    images = torch.rand(96, 1, 12, 12, generator=generator) * 0.4 + 0.3 * labels.view(-1, 1, 1, 1)
    return TensorDataset((images - 0.5) / 0.5, labels)


def test_user_cnn_distilled_pruned_exported_and_predicted_in_a_fresh_process(tmp_path: Path) -> None:
    data = _data()
    user = UserModule()
    trainer = tiny_trainer(max_epochs=3)
    trainer.fit(user, DataLoader(data, batch_size=16, shuffle=True))
    checkpoint = str(tmp_path / "user.ckpt")
    trainer.save_checkpoint(checkpoint)

    module = DistillationModule(ResidualCNN(), ResidualCNN(), teacher_checkpoint=checkpoint, learning_rate=0.03)
    assert torch.equal(module.teacher(data.tensors[0][:4]), user.eval().backbone(data.tensors[0][:4]))
    tiny_trainer(max_epochs=3).fit(module, DataLoader(data, batch_size=16, shuffle=True))
    example = data.tensors[0][:32]
    assert prune_structured(module.student, 0.5, example_inputs=example[:1])  # half the convolution channels removed
    assert module.student.conv1.out_channels == 4
    tiny_trainer(max_epochs=3).fit(module, DataLoader(data, batch_size=16, shuffle=True))  # distilled on, pruned
    student = module.student.eval()

    folder = tmp_path / "export"
    export_tensor_classifier(
        student, folder, example, id2label={0: "dark", 1: "grey", 2: "light"}, preprocessing=PREPROCESSING
    )
    inputs = data.tensors[0][32:]
    np.save(tmp_path / "inputs.npy", inputs.numpy())
    pixels = ((inputs[0, 0] * 0.5 + 0.5) * 255).round().to(torch.uint8).numpy()
    Image.fromarray(pixels, "L").save(tmp_path / "digit.png")
    run = subprocess.run(
        [sys.executable, "-c", PREDICT, str(folder), str(tmp_path)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    predicted = json.loads((tmp_path / "predicted.json").read_text())

    with torch.no_grad():
        expected = student(inputs).numpy()
    fp32, int8 = (np.array(predicted[g]["logits"]) for g in ("model.onnx", "model_quantized.onnx"))
    np.testing.assert_allclose(fp32, expected, atol=1e-4)
    np.testing.assert_allclose(int8, expected, atol=0.05)
    assert (int8.argmax(-1) == expected.argmax(-1)).mean() >= 0.9
    names = ["dark", "grey", "light"]
    assert predicted["model.onnx"]["labels"] == [names[i] for i in expected.argmax(-1)]
    assert (expected.argmax(-1) == data.tensors[1][32:].numpy()).mean() > 0.6  # trained: better than chance (1/3)
    with torch.no_grad():  # the image holds the first input rounded to 8 bits
        image_input = (torch.from_numpy(pixels).float() / 255 - 0.5) / 0.5
        np.testing.assert_allclose(predicted["image"], student(image_input[None, None]).numpy(), atol=1e-4)
