"""JSON for the values a modelyard client and the team server exchange.

Plain JSON has no datetimes, tuples, NaN or infinities, and no way to say "this object is a
ModelVersion"; pickle has all of that and runs code on load. This codec tags the few
extra kinds (``{"$datetime": …}``, ``{"$tuple": […]}``, ``{"$float": "inf"}``) and
rebuilds only the classes listed in ``_classes()`` (modelyard's own dataclasses and
pydantic models that the tracking and registry APIs return), so a peer can make nothing
else. A user's dict whose keys start with ``$`` is wrapped (``{"$dict": …}``) so it is
never read as a tag.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from datetime import datetime
from functools import cache
from pathlib import PurePath
from typing import Any

from pydantic import BaseModel

from modelyard.errors import InvalidInputError

# The only classes a peer's JSON may rebuild: modelyard's own, by module.
_ALLOWED = {
    "modelyard.contracts": ("Field", "Profile", "Schema"),
    "modelyard.registry": (
        "AliasMove",
        "FeatureBinding",
        "LoggedModel",
        "ModelRef",
        "ModelVersion",
        "RegisteredModel",
        "Signature",
        "TrafficSplit",
    ),
    "modelyard.tracking": ("Experiment", "MetricPoint", "RunInfo"),
}


@cache
def _classes() -> dict[str, type]:
    found: dict[str, type] = {}
    for module, names in _ALLOWED.items():
        loaded = importlib.import_module(module)
        found.update((name, getattr(loaded, name)) for name in names)
    return found


def encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        out = {str(k): encode(v) for k, v in value.items()}
        return {"$dict": out} if any(k.startswith("$") for k in out) else out
    if isinstance(value, PurePath):
        return str(value)
    name = type(value).__name__
    if _classes().get(name) is type(value):
        if isinstance(value, BaseModel):
            return {"$type": name, "json": value.model_dump(mode="json")}
        if dataclasses.is_dataclass(value):
            fields = {f.name: encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
            return {"$type": name, "fields": fields}
    if hasattr(value, "item") and callable(value.item):  # a numpy scalar
        return encode(value.item())
    raise InvalidInputError(f"a {name} cannot be sent to the team server")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, body),) = value.items()
        if tag == "$datetime":
            return datetime.fromisoformat(body)
        if tag == "$tuple":
            return tuple(decode(v) for v in body)
        if tag == "$float":
            return float(body)
        if tag == "$dict":
            return {k: decode(v) for k, v in body.items()}
    if "$type" in value:
        kind = _classes().get(value["$type"])
        if kind is None:
            raise InvalidInputError(f"unknown value type {value['$type']!r} from the team server")
        if issubclass(kind, BaseModel):
            return kind.model_validate(value["json"])
        return kind(**{k: decode(v) for k, v in value["fields"].items()})
    return {k: decode(v) for k, v in value.items()}
