"""Encoded images (PNG, JPEG) and pixel arrays -> the uint8 ``(channels, height, width)``
arrays an image model takes, each problem one 422 naming the row and the remedy.

Decoding is Pillow's; what is ours is the checks a service needs before a network sees
the pixels: the format (PNG or JPEG only, never whatever else Pillow can open), the
encoded size, the image's sides read from its header *before* its pixels are decoded
(a 1 KB PNG can claim 50,000 x 50,000 pixels), the channels, and the size the model
takes (resized with bilinear filtering, or refused when the spec says ``resize=False``).
"""

from __future__ import annotations

import base64
import binascii
import io
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from modelyard.errors import FieldError, SchemaValidationError

FORMATS = ("PNG", "JPEG")
MAX_BYTES = 4 * 2**20
MAX_SIDE = 4096


@dataclass(frozen=True)
class ImageSpec:
    """The images a model takes: its input size and channels (1 grey, 3 RGB), the
    per-channel ``mean`` and ``std`` its pixels (scaled to 0..1) are normalised with,
    whether other sizes are resized (else refused), and the limits on what a caller
    sends (``max_bytes`` encoded, ``max_side`` pixels on either side)."""

    height: int
    width: int
    channels: int = 1
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: bool = True
    max_bytes: int = MAX_BYTES
    max_side: int = MAX_SIDE

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels={self.channels}: an image model takes 1 (grey) or 3 (RGB)")
        if min(self.height, self.width) < 1:
            raise ValueError(f"{self.height}x{self.width} is not an image size")
        for name in ("mean", "std"):
            if len(getattr(self, name)) != self.channels:
                raise ValueError(f"{name} needs one value per channel ({self.channels})")
        if min(self.std) <= 0:
            raise ValueError("std must be positive")

    def to_json_dict(self) -> dict[str, Any]:
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_json_dict(cls, data: dict[str, Any]) -> ImageSpec:
        return cls(**{**data, "mean": tuple(data["mean"]), "std": tuple(data["std"])})


def _bad(row: int, field: str, message: str) -> SchemaValidationError:
    return SchemaValidationError([FieldError(field, message, row)])


def encoded_bytes(value: Any, row: int, field: str, spec: ImageSpec) -> bytes:
    """The file's bytes from a request value: base64 text, or bytes as they came."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
    elif isinstance(value, str):
        if value.startswith("data:") and ";base64," in value[:100]:  # a browser's data URL
            value = value.partition(";base64,")[2]
        if len(value) > (spec.max_bytes * 4) // 3 + 4:
            raise _too_big(row, field, (len(value) * 3) // 4, spec)
        try:
            data = base64.b64decode(value + "=" * (-len(value) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise _bad(
                row,
                field,
                "is not base64; send the PNG or JPEG file's bytes base64-encoded "
                "(or upload the file as multipart/form-data)",
            ) from None
    else:
        raise _bad(row, field, f"is a {type(value).__name__}; send a base64-encoded PNG or JPEG")
    if len(data) > spec.max_bytes:
        raise _too_big(row, field, len(data), spec)
    if not data:
        raise _bad(row, field, "is empty; send a PNG or JPEG image")
    return data


def _too_big(row: int, field: str, size: int, spec: ImageSpec) -> SchemaValidationError:
    return _bad(
        row,
        field,
        f"is {size / 2**20:.1f} MiB; the largest image accepted is "
        f"{spec.max_bytes / 2**20:.1f} MiB: send a smaller or more compressed image",
    )


def decode(data: bytes, row: int, field: str, spec: ImageSpec) -> np.ndarray[Any, Any]:
    """A PNG or JPEG file's bytes as uint8 ``(channels, height, width)`` for ``spec``."""
    from PIL import Image, UnidentifiedImageError

    try:
        # Sides are checked below from the header; Pillow's own bomb check would warn.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError:
        raise _bad(row, field, _not_an_image(data)) from None
    except Image.DecompressionBombError:
        message = f"has too many pixels; the largest side accepted is {spec.max_side}"
        raise _bad(row, field, message) from None
    except (OSError, ValueError, SyntaxError, AttributeError) as exc:  # a broken header
        kind = "PNG" if data.startswith(b"\x89PNG") else "JPEG"
        raise _bad(row, field, f"is a damaged {kind} file ({exc}); send the whole file") from None
    with image:
        w, h = image.size
        if max(w, h) > spec.max_side:
            raise _bad(
                row,
                field,
                f"is {w}x{h} pixels; the largest side accepted is {spec.max_side} px: "
                "scale it down first",
            )
        if (w, h) != (spec.width, spec.height) and not spec.resize:
            raise _bad(
                row,
                field,
                f"is {w}x{h} pixels; this model takes {spec.width}x{spec.height} "
                "(it does not resize): resize it first",
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
                pixels = image.convert("L" if spec.channels == 1 else "RGB")
        except (OSError, ValueError, SyntaxError) as exc:
            raise _bad(
                row, field, f"is a damaged {image.format} file ({exc}); send the whole file"
            ) from None
    if pixels.size != (spec.width, spec.height):
        pixels = pixels.resize((spec.width, spec.height), Image.Resampling.BILINEAR)
    array = np.asarray(pixels, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _not_an_image(data: bytes) -> str:
    head = data[:12]
    other = next((name for magic, name in _OTHER if head.startswith(magic)), None)
    if other is not None:
        return f"is a {other} image; this model takes PNG or JPEG: convert it first"
    return "is not a PNG or JPEG image (its bytes are neither); send the image file itself"


_OTHER = (
    (b"GIF8", "GIF"),
    (b"BM", "BMP"),
    (b"RIFF", "WebP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"\x00\x00\x00\x0cjP", "JPEG 2000"),
)


def png_base64(pixels: np.ndarray[Any, Any]) -> str:
    """uint8 ``(channels, height, width)`` pixels as a base64 PNG (lossless): what a
    client sends, and the form a pixel tensor is kept in."""
    from PIL import Image

    plane = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(plane)).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def pixels_of(
    array: np.ndarray[Any, Any], row: int, field: str, spec: ImageSpec
) -> np.ndarray[Any, Any]:
    """A pixel array sent as a tensor: ``(height, width)`` for one channel or
    ``(channels, height, width)``, uint8 0..255 or float 0..1, exactly the model's size."""
    if array.ndim == 2 and spec.channels == 1:
        array = array[None]
    want = (spec.channels, spec.height, spec.width)
    if array.shape != want:
        shape = "x".join(map(str, array.shape))
        grey = f" or {spec.height}x{spec.width}" if spec.channels == 1 else ""
        raise _bad(
            row,
            field,
            f"has shape {shape}; this model takes {spec.channels}x{spec.height}x{spec.width} "
            f"(channels x height x width){grey}",
        )
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise _bad(row, field, "float pixels must lie in 0..1; send UINT8 0..255 or scale them")
        scaled: np.ndarray[Any, Any] = np.rint(array * 255).astype(np.uint8)
        return scaled
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise _bad(row, field, "integer pixels must lie in 0..255; send UINT8")
        return array.astype(np.uint8)
    raise _bad(row, field, f"pixels of type {array.dtype} are not supported; send UINT8 or FP32")
