"""The ``image`` flavor: a PyTorch image classifier that takes images, not tensors.

``ImageClassifier`` bundles a ``torch.nn.Module`` (float ``(n, channels, height, width)``
in, one logit per class out), its class labels and its ``ImageSpec`` (input size,
channels, normalisation, limits). Its request field (``image`` by default) carries a PNG
or JPEG file, base64-encoded in JSON (or its raw bytes from a multipart upload), or a
pixel array from an Open Inference Protocol tensor; ``_image_decode.py`` turns each into
the model's pixels with one 422 per bad row. Outputs: ``prediction`` (the label),
``probability`` (its softmax probability) and ``probability_<label>`` for every class.

The network is saved as the ``torch`` flavor saves a module (pickled whole, its class
code by value: the server needs torch and Pillow, not the training code). It runs on the
GPU where CUDA is available and on the CPU otherwise (``ImageFlavor(device=...)`` pins
one), in chunks of at most ``CHUNK`` images, so a large batch from the server's
adaptive batcher cannot take unbounded memory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.errors import FieldError, SchemaValidationError
from modelyard.registry._flavors import Columns
from modelyard.registry.flavors._image_decode import (
    ImageSpec,
    decode,
    encoded_bytes,
    pixels_of,
    png_base64,
)
from modelyard.registry.flavors.torch import TorchFlavor

if TYPE_CHECKING:
    import torch

CHUNK = 512

__all__ = [
    "ImageClassifier",
    "ImageFlavor",
    "ImagePredictor",
    "ImageSpec",
    "decode",
    "normalise",
    "png_base64",
]


def normalise(pixels: torch.Tensor, spec: ImageSpec) -> torch.Tensor:
    """uint8 pixels -> the network's float input, ``(x / 255 - mean) / std`` per channel:
    the one definition training and serving share."""
    import torch

    mean = torch.tensor(spec.mean, device=pixels.device).view(1, -1, 1, 1)
    scale = torch.tensor([255.0 * s for s in spec.std], device=pixels.device).view(1, -1, 1, 1)
    return (pixels.float() - mean * 255.0) / scale


class ImageClassifier:
    """What ``log_model`` takes for the image flavor: network, labels, spec, input field."""

    def __init__(
        self,
        network: torch.nn.Module,
        classes: Sequence[str],
        spec: ImageSpec,
        *,
        input: str = "image",
    ) -> None:
        self.network = network
        self.classes = [str(c) for c in classes]
        self.spec = spec
        self.input = input


class ImagePredictor:
    def __init__(
        self,
        module: torch.nn.Module,
        classes: list[str],
        spec: ImageSpec,
        device: str,
        field: str = "image",
    ) -> None:
        self.module = module
        self.classes = classes
        self.spec = spec
        self.device = device
        self.field = field

    @property
    def tensor_inputs(self) -> dict[str, Callable[[np.ndarray[Any, Any], int], str]]:
        """The image field may come as pixels (an OIP tensor per row): checked against the
        spec and kept as a lossless PNG, so every request reaches the model, the batcher
        and the prediction log in one form. (About 20 us an image each way at 28x28.)"""
        return {self.field: self.pixels_as_png}

    def pixels_as_png(self, array: np.ndarray[Any, Any], row: int) -> str:
        return png_base64(pixels_of(array, row, self.field, self.spec))

    def predict(self, frame: pd.DataFrame) -> Columns:
        column = frame[self.field] if self.field in frame.columns else frame.iloc[:, 0]
        return self.predict_pixels(self.pixels(column.tolist()))

    def pixels(self, values: Sequence[Any]) -> np.ndarray[Any, Any]:
        """uint8 ``(n, channels, height, width)``; every bad row is named in one 422."""
        spec = self.spec
        out = np.empty((len(values), spec.channels, spec.height, spec.width), dtype=np.uint8)
        errors: list[FieldError] = []
        for row, value in enumerate(values):
            try:
                if isinstance(value, np.ndarray):
                    out[row] = pixels_of(value, row, self.field, spec)
                else:
                    out[row] = decode(
                        encoded_bytes(value, row, self.field, spec), row, self.field, spec
                    )
            except SchemaValidationError as exc:
                errors.extend(exc.errors)
        if errors:
            raise SchemaValidationError(errors)
        return out

    def predict_pixels(self, pixels: np.ndarray[Any, Any]) -> Columns:
        """Class probabilities for uint8 ``(n, channels, height, width)`` pixels."""
        import torch

        parts = []
        with torch.inference_mode():
            for start in range(0, len(pixels), CHUNK):
                x = torch.from_numpy(np.ascontiguousarray(pixels[start : start + CHUNK]))
                x = normalise(x.to(self.device, non_blocking=True), self.spec)
                parts.append(torch.softmax(self.module(x).float(), dim=1).cpu().numpy())
        proba = np.concatenate(parts) if parts else np.empty((0, len(self.classes)), np.float32)
        best = proba.argmax(axis=1)
        labels = np.asarray(self.classes, dtype=object)
        columns: Columns = {
            "prediction": labels[best],
            "probability": proba[np.arange(len(proba)), best].astype(np.float64),
        }
        for i, label in enumerate(self.classes):
            columns[f"probability_{label}"] = proba[:, i].astype(np.float64)
        return columns


class ImageFlavor:
    name = "image"

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return True  # the network is a module pickled with its code (the torch flavor's way)

    def accepts(self, model: object) -> bool:
        return isinstance(model, ImageClassifier)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        assert isinstance(model, ImageClassifier)
        settings = TorchFlavor(self.device or "cpu").save(model.network, folder)
        return {
            **settings,
            "classes": model.classes,
            "spec": model.spec.to_json_dict(),
            "input": model.input,
        }

    def load(self, folder: Path, settings: dict[str, Any]) -> ImagePredictor:
        import torch

        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        loaded = TorchFlavor(device).load(folder, settings)
        return ImagePredictor(
            loaded.module,
            [str(c) for c in settings["classes"]],
            ImageSpec.from_json_dict(settings["spec"]),
            loaded.device,
            str(settings.get("input", "image")),
        )
