"""An image or tensor classifier loaded from its export folder: tensors, arrays or PIL images in, labels out."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from lightning_distill.core.export.tensor_folder import (
    IMAGE_MODES,
    PREPROCESSING_KEYS,
    PREPROCESSOR_CONFIG,
    check_preprocessing,
)

__all__ = ["ExportedTensorClassifier"]


class ExportedTensorClassifier:
    """An image or tensor classifier of an export folder: call it with inputs, get label names.

    Inputs are either model inputs or images:

    - a ``torch.Tensor`` or numpy array, taken as the model's input exactly as the data module yields it (already
      normalized): one example (its shape is ``input_shape``) or a batch of them (batch axis first);
    - a PIL image or a list of them, turned into model inputs as ``preprocessor_config.json`` says (converted to its
      ``image_mode``, resized to its ``size``, rescaled and normalized). Only folders exported with ``preprocessing``
      have that file.

    Args:
        session: The ``onnxruntime.InferenceSession`` of one graph of the folder.
        config: The folder's ``config.json`` (``input_name``, ``input_shape``, ``input_dtype``).
        preprocessor: The folder's ``preprocessor_config.json``; None where it has none.
        id2label: Label names by class id.
        graph: Path of the graph the session runs.
    """

    def __init__(
        self,
        session: Any,
        config: Mapping[str, Any],
        preprocessor: Mapping[str, Any] | None,
        id2label: dict[int, str],
        graph: Path,
    ) -> None:
        self.session, self.preprocessor, self.id2label, self.graph = session, preprocessor, id2label, graph
        self.input_name = str(config.get("input_name", session.get_inputs()[0].name))
        self.input_shape = tuple(int(d) for d in config["input_shape"])
        self.input_dtype = np.dtype(str(config.get("input_dtype", "float32")))

    def encode(self, inputs: Any) -> np.ndarray:
        """The graph's input batch for a tensor, an array, a PIL image or a list of PIL images.

        Raises:
            ValueError: the input's shape is neither ``input_shape`` nor a batch of it (the message names both), an
                empty list, or images given to a folder without ``preprocessor_config.json``.
            TypeError: an input of another kind.
        """
        if isinstance(inputs, Sequence) and not isinstance(inputs, str | bytes):
            if not inputs:
                raise ValueError("got an empty list of inputs: pass at least one image or a tensor")
            return np.stack([self._image(image) for image in inputs])
        if _is_image(inputs):
            return self._image(inputs)[None]
        if hasattr(inputs, "detach") and hasattr(inputs, "cpu"):  # a torch tensor
            inputs = inputs.detach().cpu().numpy()
        if not isinstance(inputs, np.ndarray):
            raise TypeError(
                f"cannot classify a {type(inputs).__name__}: pass a torch tensor or numpy array of shape "
                f"{list(self.input_shape)} (or a batch of them), or PIL images"
            )
        if inputs.shape == self.input_shape:
            inputs = inputs[None]
        elif inputs.shape[1:] != self.input_shape:
            raise ValueError(
                f"inputs of shape {list(inputs.shape)} do not fit the model, which takes {list(self.input_shape)} "
                f"(one example) or [batch, {', '.join(str(d) for d in self.input_shape)}]"
            )
        return np.ascontiguousarray(inputs, dtype=self.input_dtype)

    def _image(self, image: Any) -> np.ndarray:
        if not _is_image(image):
            raise TypeError(f"a list of inputs must hold PIL images; got a {type(image).__name__}")
        if self.preprocessor is None:
            raise ValueError(
                f"{self.graph.parent} has no {PREPROCESSOR_CONFIG}, so it cannot turn images into model inputs: pass "
                f"tensors of shape {list(self.input_shape)} normalized as in training, or export with preprocessing"
            )
        return preprocess_image(image, self.preprocessor, self.input_shape, self.input_dtype)

    def logits(self, inputs: Any) -> np.ndarray:
        """Logits of shape ``(batch, num_labels)`` (one row for a single example or image)."""
        return self.session.run(None, {self.input_name: self.encode(inputs)})[0]

    def predict_ids(self, inputs: Any) -> list[int]:
        """The most likely class id of each example."""
        return [int(i) for i in self.logits(inputs).argmax(-1)]

    def __call__(self, inputs: Any) -> list[str]:
        """The most likely label name of each example (a one-element list for a single example or image)."""
        return [self.id2label[i] for i in self.predict_ids(inputs)]


def _is_image(value: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # without Pillow there can be no PIL image
        return False
    return isinstance(value, Image.Image)


def preprocess_image(
    image: Any, preprocessor: Mapping[str, Any], input_shape: Sequence[int], dtype: np.dtype
) -> np.ndarray:
    """One PIL image as a model input of ``input_shape``: converted, resized, rescaled and normalized as
    ``preprocessor`` (``preprocessor_config.json``) says, channels first."""
    from PIL import Image

    mode = preprocessor.get("image_mode", "RGB")
    size = preprocessor["size"]
    image = image.convert(mode)
    if preprocessor.get("do_resize", True) and image.size != (size["width"], size["height"]):
        image = image.resize((size["width"], size["height"]), Image.Resampling.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32).reshape(size["height"], size["width"], IMAGE_MODES[mode])
    if preprocessor.get("do_rescale", True):
        pixels = pixels * float(preprocessor.get("rescale_factor", 1 / 255))
    if preprocessor.get("do_normalize", False):
        pixels = (pixels - np.asarray(preprocessor["image_mean"], np.float32)) / np.asarray(
            preprocessor["image_std"], np.float32
        )
    return pixels.transpose(2, 0, 1).reshape(input_shape).astype(dtype)


def load_tensor_classifier(
    folder: Path, path: Path, config: Mapping[str, Any], session: Any
) -> ExportedTensorClassifier:
    """The :class:`ExportedTensorClassifier` of ``folder`` running the graph at ``path`` in ``session``.

    Raises:
        ValueError: the folder's ``preprocessor_config.json`` does not say how to turn an image into the model's
            input (it normalizes without ``image_mean`` or ``image_std``, or its images do not fit ``input_shape``).
    """
    id2label = {int(k): str(v) for k, v in config.get("id2label", {}).items()}
    processor_path = folder / PREPROCESSOR_CONFIG
    preprocessor = None
    if processor_path.is_file():
        written = json.loads(processor_path.read_text())
        try:
            preprocessor = check_preprocessing(
                {k: v for k, v in written.items() if k in PREPROCESSING_KEYS}, config["input_shape"]
            )
        except ValueError as error:
            raise ValueError(
                f"{str(processor_path)!r} cannot turn images into this model's inputs ({error}): fix it, delete it "
                "to classify tensors only, or export the model again"
            ) from error
    return ExportedTensorClassifier(session, config, preprocessor, id2label, path)
