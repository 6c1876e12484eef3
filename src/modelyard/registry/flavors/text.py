"""The ``text`` flavor: a Hugging Face encoder with a classification head; text in, label out.

``TextClassifier`` is a ``torch.nn.Module``: the encoder (any ``transformers`` model with
``last_hidden_state``), mean pooling over the attention mask, dropout and a linear head,
plus the Rust tokenizer (``tokenizers``) it was trained with. It is saved as files any
tool can read: ``encoder/`` (``save_pretrained``, safetensors), ``head.safetensors`` and
``tokenizer.json``, not as a pickle, so a version loads without the training code.

Runtimes. PyTorch by default. ``log_model(..., onnx=True)`` also exports ``model.onnx``
(dynamic batch and sequence axes) and keeps it only when onnxruntime answers like
PyTorch on the example rows: every label equal and every probability within
``_text_onnx.TOLERANCE`` (1e-4); the version then serves from onnxruntime, which
needs neither torch nor transformers. ``onnx="int8"`` quantises that export's weights
(dynamic int8). int8 is never exact, so it is kept with the share of example labels it
agrees on (``onnx_agreement``), and only a release gate on accuracy can say whether it
may serve.

Length bucketing: ``predict`` tokenises every text, sorts them by token count, runs
chunks of at most ``batch_size`` texts whose longest is at most ``SPREAD`` (1.5) times
their shortest, each padded only to its own longest, and puts the rows back in order.
A mixed batch padded to its longest text spends most of its compute on padding
(bench/sentiment.py measures the difference), and the server's adaptive batcher hands
the model whatever arrived together.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError
from modelyard.registry._flavors import Columns

if TYPE_CHECKING:
    import torch
    from tokenizers import Tokenizer

ENCODER_DIR = "encoder"
HEAD_FILE = "head.safetensors"
TOKENIZER_FILE = "tokenizer.json"
BATCH_SIZE = 32
SPREAD = 1.5
"""A chunk's longest text is at most this many times its shortest (in tokens)."""

Logits = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(input_ids, attention_mask) as int64 arrays -> logits as a float array."""


def _quiet_transformers() -> None:
    """No progress bars from ``transformers`` (they would land in servers' and jobs' logs)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]


def load_tokenizer(path: Path | str, max_tokens: int) -> Tokenizer:
    """A Rust tokenizer that truncates to ``max_tokens`` and never pads (we pad per chunk)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_tokens)
    return tokenizer


def text_classifier_class() -> type[Any]:
    """The ``TextClassifier`` module class (built on first use, so importing this is cheap)."""
    global _CLASS
    if _CLASS is None:
        _CLASS = _define_class()
    return _CLASS


_CLASS: type[Any] | None = None


def _define_class() -> type[Any]:
    import torch

    class TextClassifier(torch.nn.Module):
        """Encoder + mean pooling + dropout + linear head, with its tokenizer."""

        def __init__(
            self,
            encoder: torch.nn.Module,
            tokenizer: Tokenizer,
            classes: Sequence[str],
            *,
            max_tokens: int = 128,
            text_column: str = "text",
            dropout: float = 0.1,
        ) -> None:
            super().__init__()
            self.encoder = encoder
            config: Any = encoder.config
            hidden = int(config.hidden_size)
            self.dropout = torch.nn.Dropout(dropout)
            self.head = torch.nn.Linear(hidden, len(classes))
            self.tokenizer = tokenizer
            self.classes = [str(c) for c in classes]
            self.max_tokens = max_tokens
            self.text_column = text_column

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            logits: torch.Tensor = self.head(self.dropout(self.embed(input_ids, attention_mask)))
            return logits

        def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            """Mean of the token vectors that are not padding."""
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask)
            states = hidden.last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            pooled: torch.Tensor = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return pooled

        def encode(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
            """Token ids and mask per text (unpadded)."""
            return _encode(self.tokenizer, texts)

    return TextClassifier


def from_pretrained(
    path: Path | str,
    classes: Sequence[str],
    *,
    max_tokens: int = 128,
    text_column: str = "text",
    dropout: float = 0.1,
) -> Any:
    """A new ``TextClassifier`` on a local Hugging Face model folder (never the network)."""
    from transformers import AutoModel

    _quiet_transformers()
    folder = Path(path)
    if not (folder / TOKENIZER_FILE).is_file():
        raise InvalidInputError(
            f"{folder} has no {TOKENIZER_FILE}; point at a Hugging Face model folder "
            "saved with a fast tokenizer"
        )
    encoder = AutoModel.from_pretrained(str(folder), local_files_only=True)
    tokenizer = load_tokenizer(folder / TOKENIZER_FILE, max_tokens)
    cls = text_classifier_class()
    return cls(
        encoder,
        tokenizer,
        classes,
        max_tokens=max_tokens,
        text_column=text_column,
        dropout=dropout,
    )


# -- prediction ------------------------------------------------------------------------------
def _encode(tokenizer: Tokenizer, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
    encodings = tokenizer.encode_batch([str(t) for t in texts])
    return [
        (np.asarray(e.ids, dtype=np.int64), np.asarray(e.attention_mask, dtype=np.int64))
        for e in encodings
    ]


def length_buckets(
    lengths: Sequence[int], batch_size: int, spread: float = SPREAD
) -> list[np.ndarray]:
    """Row indices in chunks of similar length, shortest first (stable).

    A chunk closes at ``batch_size`` rows, or before a row longer than ``spread`` times
    the chunk's first: a batch of 16 mixed requests then runs as a few chunks padded
    a little, not as one padded to its longest text.
    """
    size = np.asarray(lengths)
    order = np.argsort(size, kind="stable")
    chunks: list[np.ndarray] = []
    start = 0
    for i in range(1, len(order) + 1):
        if (
            i == len(order)
            or i - start >= batch_size
            or size[order[i]] > spread * max(1, size[order[start]])
        ):
            chunks.append(order[start:i])
            start = i
    return chunks


def _pad(rows: list[tuple[np.ndarray, np.ndarray]], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    width = max(len(ids) for ids, _ in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, (row_ids, row_mask) in enumerate(rows):
        ids[i, : len(row_ids)] = row_ids
        mask[i, : len(row_mask)] = row_mask
    return ids, mask


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float64)


def class_columns(proba: np.ndarray, classes: Sequence[str]) -> Columns:
    """A classifier's answer from its probabilities (rows x classes): ``prediction`` (the
    label), ``probability`` (of that label) and ``probability_CLASS`` for each class."""
    best = proba.argmax(axis=1) if len(proba) else np.zeros(0, dtype=np.int64)
    out: Columns = {
        "prediction": np.asarray(classes, dtype=object)[best],
        "probability": proba[np.arange(len(proba)), best],
    }
    for i, cls in enumerate(classes):
        out[f"probability_{cls}"] = proba[:, i]
    return out


class TextPredictor:
    """Tokenise, bucket by length, run ``logits`` per chunk, answer labels and probabilities."""

    def __init__(
        self,
        logits: Logits,
        tokenizer: Tokenizer,
        classes: Sequence[str],
        *,
        text_column: str,
        batch_size: int = BATCH_SIZE,
        runtime: str = "torch",
        sort_by_length: bool = True,
    ) -> None:
        self._logits = logits
        self.sort_by_length = sort_by_length
        self._tokenizer = tokenizer
        self.classes = [str(c) for c in classes]
        self.text_column = text_column
        self.batch_size = batch_size
        self.runtime = runtime
        pad = tokenizer.token_to_id("[PAD]")
        self._pad_id = 0 if pad is None else int(pad)

    def predict(self, frame: pd.DataFrame) -> Columns:
        if self.text_column not in frame.columns:
            raise InvalidInputError(
                f"the text model reads column {self.text_column!r}, which the input lacks"
            )
        texts = frame[self.text_column].tolist()
        return self.predict_texts(texts)

    def predict_texts(self, texts: Sequence[str]) -> Columns:
        return class_columns(self.probabilities(texts), self.classes)

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text after truncation (what a chunk is padded by)."""
        return [len(ids) for ids, _ in _encode(self._tokenizer, texts)]

    def probabilities(self, texts: Sequence[str]) -> np.ndarray:
        encoded = _encode(self._tokenizer, texts)
        proba = np.zeros((len(encoded), len(self.classes)), dtype=np.float64)
        lengths = [len(ids) for ids, _ in encoded]
        if not self.sort_by_length:  # arrival order: for measuring what sorting saves
            lengths = [0] * len(encoded)
        for chunk in length_buckets(lengths, self.batch_size):
            ids, mask = _pad([encoded[i] for i in chunk], self._pad_id)
            proba[chunk] = _softmax(np.asarray(self._logits(ids, mask), dtype=np.float64))
        return proba


def torch_logits(module: torch.nn.Module, device: str = "cpu") -> Logits:
    import torch

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = module(torch.from_numpy(ids).to(device), torch.from_numpy(mask).to(device))
        return np.asarray(out.float().cpu().numpy())

    return run


def onnx_logits(path: Path | str | bytes, threads: int = 0) -> Logits:
    """onnxruntime on the CPU; ``threads=0`` lets it use every core for one call."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        path if isinstance(path, bytes) else str(path),
        options,
        providers=["CPUExecutionProvider"],
    )

    def run(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = session.run(None, {"input_ids": ids, "attention_mask": mask})
        return np.asarray(out[0])

    return run


def predictor_of(model: Any, *, device: str = "cpu") -> TextPredictor:
    """A PyTorch-runtime predictor for a ``TextClassifier`` in memory (for evaluation)."""
    model.eval()
    return TextPredictor(
        torch_logits(model, device),
        model.tokenizer,
        model.classes,
        text_column=model.text_column,
    )


# -- the flavor ------------------------------------------------------------------------------
class TextFlavor:
    name = "text"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return False  # safetensors, tokenizer.json and ONNX: no pickle

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def accepts(self, model: object) -> bool:
        return _CLASS is not None and isinstance(model, _CLASS)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        from safetensors.torch import save_file

        assert _CLASS is not None and isinstance(model, _CLASS)
        _quiet_transformers()
        module: Any = model
        module.encoder.save_pretrained(str(folder / ENCODER_DIR), safe_serialization=True)
        head = {k: v.detach().cpu().contiguous() for k, v in module.head.state_dict().items()}
        save_file(head, str(folder / HEAD_FILE))
        module.tokenizer.save(str(folder / TOKENIZER_FILE))
        return {
            "runtime": "torch",
            "classes": module.classes,
            "max_tokens": module.max_tokens,
            "text_column": module.text_column,
            "batch_size": BATCH_SIZE,
        }

    def load(self, folder: Path, settings: dict[str, Any]) -> TextPredictor:
        tokenizer = load_tokenizer(folder / TOKENIZER_FILE, int(settings["max_tokens"]))
        runtime = str(settings.get("runtime", "torch"))
        if runtime.startswith("onnx"):
            logits = onnx_logits(folder / settings["onnx_file"], int(settings.get("threads", 0)))
        else:
            module = load_module(folder, settings, tokenizer)
            from modelyard.registry.flavors.torch import _device

            device = _device(self.device or "cpu")
            logits = torch_logits(module.to(device).eval(), device)
        return TextPredictor(
            logits,
            tokenizer,
            settings["classes"],
            text_column=str(settings["text_column"]),
            batch_size=int(settings.get("batch_size", BATCH_SIZE)),
            runtime=runtime,
        )

    def convert_onnx(
        self, model: object, example: pd.DataFrame, folder: Path, mode: bool | str
    ) -> dict[str, Any]:
        from modelyard.registry.flavors._text_onnx import convert_checked

        return convert_checked(model, example, folder, quantize=mode == "int8")


def load_module(folder: Path, settings: dict[str, Any], tokenizer: Tokenizer) -> Any:
    """The saved ``TextClassifier`` back as a PyTorch module (eval mode, CPU)."""
    from safetensors.torch import load_file
    from transformers import AutoModel

    _quiet_transformers()
    encoder = AutoModel.from_pretrained(str(folder / ENCODER_DIR), local_files_only=True)
    module = text_classifier_class()(
        encoder,
        tokenizer,
        settings["classes"],
        max_tokens=int(settings["max_tokens"]),
        text_column=str(settings["text_column"]),
    )
    module.head.load_state_dict(load_file(str(folder / HEAD_FILE)))
    return module.eval()


__all__ = [
    "TextFlavor",
    "TextPredictor",
    "class_columns",
    "from_pretrained",
    "length_buckets",
    "predictor_of",
    "text_classifier_class",
]
