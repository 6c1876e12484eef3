"""The text flavor's ONNX copies: export, check against PyTorch, quantise (see text.py).

fp32 is kept only when onnxruntime answers like PyTorch on the example rows; int8 is
kept with its measured agreement, since it is never exact.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError
from modelyard.registry.flavors.text import TextPredictor, _encode, _pad, onnx_logits, predictor_of

logger = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
TOLERANCE = 1e-4
"""Largest difference in a class probability between onnxruntime fp32 and PyTorch."""


def convert_checked(
    model: Any, example: pd.DataFrame, folder: Path, *, quantize: bool = False
) -> dict[str, Any]:
    """Export ``model.onnx`` into ``folder`` and check it against PyTorch on ``example``.

    fp32 is kept only when exact (labels equal, probabilities within ``TOLERANCE``), else
    ``InvalidInputError``. int8 (``quantize=True``) is kept with its agreement recorded.
    """
    texts = example[model.text_column].astype(str).tolist()[:100]
    if not texts:
        raise InvalidInputError("onnx= checks the export on input_example rows; pass some")
    model.eval()
    expected = predictor_of(model).probabilities(texts)
    with tempfile.TemporaryDirectory(prefix="modelyard-onnx-") as tmp:
        fp32 = Path(tmp) / ONNX_FILE
        _export(model, texts, fp32)
        if quantize:
            path = Path(tmp) / "model.int8.onnx"
            _quantize(fp32, path)
        else:
            path = fp32
        got = _predictor_from(path, model).probabilities(texts)
        agreement = float((got.argmax(axis=1) == expected.argmax(axis=1)).mean())
        worst = float(np.abs(got - expected).max())
        if not quantize and (agreement < 1.0 or worst > TOLERANCE):
            raise InvalidInputError(
                f"the ONNX export of the text model is not exact on {len(texts)} example "
                f"rows: labels agree on {agreement:.1%}, probabilities differ by up to "
                f"{worst:.3g} (tolerance {TOLERANCE:g}); log it without onnx= to serve it "
                "with PyTorch"
            )
        name = "model.int8.onnx" if quantize else ONNX_FILE
        (folder / name).write_bytes(path.read_bytes())
    if quantize:
        logger.info("int8 export agrees with PyTorch on %.1f%% of example labels", 100 * agreement)
    return {
        "runtime": "onnxruntime-int8" if quantize else "onnxruntime",
        "onnx_file": name,
        "onnx_agreement": agreement,
        "onnx_max_difference": worst,
        "onnx_checked_rows": len(texts),
    }


def _predictor_from(path: Path, model: Any) -> TextPredictor:
    return TextPredictor(
        onnx_logits(path),
        model.tokenizer,
        model.classes,
        text_column=model.text_column,
    )


def _export(model: Any, texts: Sequence[str], path: Path) -> None:
    import torch

    encoded = _encode(model.tokenizer, texts[:2] if len(texts) > 1 else [*texts, *texts])
    pad = model.tokenizer.token_to_id("[PAD]")
    ids, mask = _pad(encoded, 0 if pad is None else int(pad))
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}}
    with warnings.catch_warnings():
        # The TorchScript-based exporter warns about its own deprecation and about the
        # encoder's Python control flow being traced; the agreement check below is what
        # says whether the trace is right, for every batch size and length it is given.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["logits"],
            dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )


def _quantize(source: Path, target: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic  # type: ignore[import-untyped]

    # onnxruntime's quantizer warns on the root logger that pre-processing could help;
    # the agreement measured afterwards is what matters here.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8)
    finally:
        root.setLevel(level)
