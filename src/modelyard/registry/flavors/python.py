"""The ``python`` flavor: any callable ``f(frame) -> frame | dict | array``, pickled by value.

cloudpickle (not pickle) because functions defined in a notebook or ``__main__`` must
travel by value, not by an import path that the server cannot resolve.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cloudpickle
import pandas as pd

from modelyard.registry._flavors import Columns, to_output_columns

FILE = "model.cloudpickle"


class _CallablePredictor:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def predict(self, frame: pd.DataFrame) -> Columns:
        return to_output_columns(self.fn(frame), len(frame))


class PythonFlavor:
    name = "python"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return True  # cloudpickle: the function is code

    def accepts(self, model: object) -> bool:
        return callable(model)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        (folder / FILE).write_bytes(cloudpickle.dumps(model))
        return {"file": FILE}

    def load(self, folder: Path, settings: dict[str, Any]) -> _CallablePredictor:
        fn = cloudpickle.loads((folder / settings.get("file", FILE)).read_bytes())
        return _CallablePredictor(fn)
