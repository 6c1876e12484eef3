"""ONNX Runtime for scikit-learn models: convert with skl2onnx, keep only an exact copy.

``ws.registry.log_model(run, model, input_example=..., onnx=True)`` converts the model,
runs scikit-learn and onnxruntime on the example (up to 100 rows) and keeps
``model.onnx`` only when they agree: every label equal, and every float output (class
probabilities, regression values) within ``TOLERANCE`` = 1e-5 absolute, relative for
values above 1 in magnitude (float32 cannot hold a regression value of 150 to 1e-5).
Otherwise it raises ``InvalidInputError`` naming the largest difference; the remedy is
to log the model without ``onnx=True``.

Numeric inputs go in as one float64 tensor (exact for linear models and most
transformers), else float32 (what onnxruntime's tree ensembles take); inputs with
text columns, or pipelines that select columns by name, get one input per column.
The first layout that converts and agrees is kept. The session runs single-threaded
(``intra_op_num_threads=1``): serving scales with processes, not threads per call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError
from modelyard.registry._flavors import Columns
from modelyard.registry.flavors.sklearn import SklearnPredictor, _plain, _steps

FILE = "model.onnx"
TOLERANCE = 1e-5
LAYOUTS = (
    ("tensor", "float64"),
    ("tensor", "float32"),
    ("columns", "float64"),
    ("columns", "float32"),
)


class OnnxPredictor:
    """Answers the same columns as the ``sklearn`` flavor, from an onnxruntime session."""

    def __init__(self, session: Any, settings: dict[str, Any]) -> None:
        self.session = session
        self._tensor = bool(settings["onnx_inputs"] == "tensor")
        self._dtype = np.dtype(settings["onnx_dtype"])
        self._inputs = [i.name for i in session.get_inputs()]
        classes = settings.get("classes")
        self._classes: list[Any] = classes or []
        self._proba = classes is not None and bool(settings.get("proba"))

    @property
    def takes_arrays(self) -> bool:
        return self._tensor

    def predict(self, frame: pd.DataFrame) -> Columns:
        if self._tensor:
            return self.predict_array(frame.to_numpy(dtype=self._dtype))
        feed = {name: _column(frame.iloc[:, i], self._dtype) for i, name in enumerate(self._inputs)}
        return self._columns(self.session.run(None, feed))

    def predict_array(self, x: np.ndarray) -> Columns:
        """Numeric inputs as one 2-D array, columns in signature order."""
        if not self._tensor:
            raise TypeError("this model takes one input per column; call predict()")
        return self._columns(self.session.run(None, {self._inputs[0]: x.astype(self._dtype)}))

    def _columns(self, outputs: list[Any]) -> Columns:
        first = np.asarray(outputs[0])
        if not self._classes:  # a regressor (or a transformer): one value per row
            values = first.reshape(-1) if first.ndim == 2 and first.shape[1] == 1 else first
            return {"prediction": values.astype(np.float64) if values.dtype.kind == "f" else values}
        out: Columns = {"prediction": first.reshape(-1).astype(object)}
        if self._proba:
            proba = np.asarray(outputs[1], dtype=np.float64)
            for i, cls in enumerate(self._classes):
                out[f"probability_{cls}"] = proba[:, i]
        return out


def _column(values: pd.Series, dtype: np.dtype) -> np.ndarray:
    kind = values.dtype.kind
    if kind in "iu":
        return values.to_numpy(dtype=np.int64).reshape(-1, 1)
    if kind in "fb":
        return values.to_numpy(dtype=dtype).reshape(-1, 1)
    return values.astype(str).to_numpy(dtype=object).reshape(-1, 1)


def session(model_bytes: bytes | str) -> Any:
    """A single-threaded CPU onnxruntime session."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])


def load(folder: Path, settings: dict[str, Any]) -> OnnxPredictor:
    return OnnxPredictor(session(str(folder / settings.get("onnx_file", FILE))), settings)


def convert_checked(model: Any, example: pd.DataFrame, folder: Path) -> dict[str, Any]:
    """Write ``model.onnx`` into ``folder`` if the conversion agrees on ``example``.

    Returns the settings to add to the ``sklearn`` flavor's; raises ``InvalidInputError``
    when no input layout converts, or none agrees within ``TOLERANCE``.
    """
    import skl2onnx  # type: ignore[import-untyped]

    example = example.head(100)
    expected = SklearnPredictor(model).predict(example)
    classes = getattr(model, "classes_", None)
    base: dict[str, Any] = {
        "runtime": "onnxruntime",
        "onnx_file": FILE,
        "classes": None if classes is None else [_plain(c) for c in classes],
        "proba": classes is not None and hasattr(model, "predict_proba"),
        "skl2onnx_version": skl2onnx.__version__,
    }
    failures: list[str] = []
    mismatches: list[str] = []
    for inputs, dtype in _layouts(model, example):
        settings = {**base, "onnx_inputs": inputs, "onnx_dtype": dtype}
        try:
            onx = _convert(model, example, inputs, dtype)
            got = OnnxPredictor(session(onx), settings).predict(example)
        except Exception as exc:  # a converter or runtime refusal: try the next layout
            failures.append(f"{inputs}/{dtype}: {_first_line(exc)}")
            continue
        difference = _difference(expected, got)
        if difference is None:
            (folder / FILE).write_bytes(onx)
            return settings
        mismatches.append(difference)
    name = type(model).__name__
    remedy = "log it without onnx=True to serve it with scikit-learn"
    if mismatches:
        raise InvalidInputError(
            f"the ONNX conversion of {name} is not exact on the {len(example)} example rows: "
            f"{mismatches[0]} (tolerance {TOLERANCE:g}, relative above 1); {remedy}"
        )
    raise InvalidInputError(f"{name} cannot be converted to ONNX ({failures[0]}); {remedy}")


def _layouts(model: Any, example: pd.DataFrame) -> list[tuple[str, str]]:
    numeric = all(example[c].dtype.kind in "biuf" for c in example.columns)
    by_name = any(hasattr(step, "transformers") for step in _steps(model))
    if numeric and not by_name:
        return list(LAYOUTS)
    return [layout for layout in LAYOUTS if layout[0] == "columns"]


def _convert(model: Any, example: pd.DataFrame, inputs: str, dtype: str) -> bytes:
    from skl2onnx import convert_sklearn
    from skl2onnx.common import data_types as types  # type: ignore[import-untyped]

    real = types.DoubleTensorType if dtype == "float64" else types.FloatTensorType
    if inputs == "tensor":
        initial = [("input", real([None, example.shape[1]]))]
    else:
        initial = []
        for c in example.columns:
            kind = example[c].dtype.kind
            tensor = types.Int64TensorType if kind in "iu" else real if kind in "fb" else None
            initial.append((str(c), (tensor or types.StringTensorType)([None, 1])))
    final = _steps(model)[-1]
    # Probabilities as one tensor, not a list of {class: p} maps (the "zipmap").
    options = {id(final): {"zipmap": False}} if hasattr(final, "predict_proba") else None
    onx = convert_sklearn(model, initial_types=initial, options=options)
    data: bytes = onx.SerializeToString()
    return data


def _difference(expected: Columns, got: Columns) -> str | None:
    """What differs most between two predictions, or None when they agree."""
    for name, want in expected.items():
        if name not in got:
            return f"output {name!r} is missing"
        a, b = np.asarray(want), np.asarray(got[name])
        if a.shape != b.shape:
            return f"{name!r} has shape {b.shape} instead of {a.shape}"
        if a.dtype.kind == "f":
            b = b.astype(np.float64)
            error = np.abs(a - b)
            agree = (error <= TOLERANCE * np.maximum(1.0, np.abs(a))) | (np.isnan(a) & np.isnan(b))
            if not agree.all():
                worst = np.where(np.isnan(error), np.inf, error)[~agree].max()
                return f"{name!r} differs by up to {worst:.3g}"
        else:
            wrong = sum(x != y for x, y in zip(a.tolist(), b.tolist(), strict=True))
            if wrong:
                return f"{name!r} differs on {wrong} of {len(a)} rows"
    return None


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:300]
