"""The ``torch`` flavor: a ``torch.nn.Module``, saved whole with ``torch.save`` and cloudpickle.

Why not TorchScript: torch 2.13 deprecates both ``torch.jit.script`` and
``torch.jit.load``, scripting rejects much ordinary Python, and tracing bakes in the
branch taken on one example (silently wrong for data-dependent control flow). Why not
a ``state_dict``: loading one needs the user's class. Instead the module is pickled
whole, and the modules that define its classes (those outside the standard library
and installed packages) are pickled *by value*: the file carries the class code with
the weights, so a server loads it with only torch (and the installed packages the
model uses) importable, not the user's training code. A ``torch.jit.ScriptModule``
is saved with ``torch.jit.save``, the only way to save one.

Inputs: the numeric columns in signature order as one float32 tensor. Outputs: a 1-D
tensor or one column -> ``prediction``; ``(n, k)`` -> ``output_0 … output_{k-1}``
(logits are left as they are); a dict of tensors -> one column per key.

Device: CPU by default. ``register_flavor(TorchFlavor(device="cuda"))`` saves that
choice with new models and, on a serving host, overrides what a model was saved with;
``cuda`` falls back to CPU (logged) where CUDA is not available.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cloudpickle
import numpy as np
import pandas as pd

from modelyard.errors import InvalidInputError
from modelyard.registry._flavors import Columns, to_output_columns

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

FILE = "model.pt"


class TorchPredictor:
    takes_arrays = True

    def __init__(self, module: torch.nn.Module, device: str) -> None:
        self.module = module
        self.device = device

    def predict(self, frame: pd.DataFrame) -> Columns:
        wrong = [str(c) for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
        if wrong:
            raise InvalidInputError(
                f"the torch flavor takes numeric columns only; {', '.join(map(repr, wrong))} "
                "are not numeric: encode them in the module or before calling predict"
            )
        return self.predict_array(frame.to_numpy(dtype=np.float32))

    def predict_array(self, x: np.ndarray) -> Columns:
        """Numeric inputs as one 2-D array, columns in signature order."""
        import torch

        # from_numpy shares memory, and warns on a read-only array (a pandas view): copy those.
        batch = torch.from_numpy(np.require(x, np.float32, ["C", "W"])).to(self.device)
        with torch.inference_mode():
            result = self.module(batch)
        if isinstance(result, dict):
            return to_output_columns({str(k): _numpy(v) for k, v in result.items()}, len(x))
        values = _numpy(result)
        if values.ndim == 2 and values.shape[1] == 1:
            values = values.reshape(-1)
        return to_output_columns(values, len(x))


def _numpy(value: Any) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


class TorchFlavor:
    name = "torch"

    def loads_pickle(self, settings: dict[str, Any]) -> bool:
        return True  # torch.save with cloudpickle: the module's class is code

    def __init__(self, device: str | None = None) -> None:
        self.device = device

    def accepts(self, model: object) -> bool:
        if "torch" not in sys.modules:  # no Module can exist before torch is imported
            return False
        import torch

        return isinstance(model, torch.nn.Module)

    def save(self, model: object, folder: Path) -> dict[str, Any]:
        import torch

        settings = {"file": FILE, "torch_version": torch.__version__}
        settings["device"] = self.device or "cpu"
        if isinstance(model, torch.jit.ScriptModule):
            torch.jit.save(model, str(folder / FILE))
            return {**settings, "format": "torchscript"}
        assert isinstance(model, torch.nn.Module)
        by_value = _defining_modules(model) - set(cloudpickle.list_registry_pickle_by_value())
        for name in by_value:
            cloudpickle.register_pickle_by_value(sys.modules[name])
        try:
            torch.save(model, folder / FILE, pickle_module=cloudpickle)
        finally:
            for name in by_value:
                cloudpickle.unregister_pickle_by_value(sys.modules[name])
        return {**settings, "format": "cloudpickle"}

    def load(self, folder: Path, settings: dict[str, Any]) -> TorchPredictor:
        import torch

        device = _device(self.device or settings.get("device", "cpu"))
        path = folder / settings.get("file", FILE)
        module: torch.nn.Module
        if settings.get("format") == "torchscript":
            module = torch.jit.load(str(path), map_location=device)  # type: ignore[no-untyped-call]
        else:
            # weights_only=False: the file holds the module's code, pickled by value.
            module = torch.load(path, map_location=device, weights_only=False)
        module.to(device).eval()
        return TorchPredictor(module, device)


def _device(wanted: str) -> str:
    import torch

    if wanted != "cpu" and not wanted.startswith("cuda"):
        raise InvalidInputError(f"torch device {wanted!r} is not supported; use 'cpu' or 'cuda'")
    if wanted.startswith("cuda") and not torch.cuda.is_available():
        logger.warning("torch device %r is not available here; loading on the CPU", wanted)
        return "cpu"
    return wanted


def _defining_modules(model: Any) -> set[str]:
    """Modules that define the model's classes and are neither stdlib nor installed."""
    names = {cls.__module__ for sub in model.modules() for cls in type(sub).__mro__}
    found = set()
    for name in names:
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None)
        if name == "__main__" or path is None:  # __main__ already travels by value
            continue
        top = name.partition(".")[0]
        if top == "torch" or top in sys.stdlib_module_names:
            continue
        if {"site-packages", "dist-packages"} & set(Path(path).parts):
            continue
        found.add(name)
    return found
