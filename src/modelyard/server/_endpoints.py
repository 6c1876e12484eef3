"""The table of endpoints: each MLflow (or modelyard) route, its method, the permission
it needs, and the function that answers it.

A handler takes a ``Call`` (the server's stores, the request's arguments, the caller's
key) and returns the JSON body. It runs in a worker thread, so it may block on the
database; ``_app.py`` turns the table into routes and errors into MLflow's shape.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.server._errors import invalid

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.backends.metadata import MetadataStore
    from modelyard.registry import Registry
    from modelyard.security import ApiKey, Permission

V2 = "/api/2.0/mlflow"
ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


@dataclass
class Stores:
    """What the handlers read and write: the workspace's stores, opened once."""

    metadata: MetadataStore
    artifacts: ArtifactStore
    registry: Registry
    # Where uploads and downloads are staged: the workspace's state folder, not /tmp (a
    # big upload fits where the workspace lives); what a killed server left is swept at
    # start (``sweep_scratch``).
    scratch: Path = Path(tempfile.gettempdir())

    def staging(self, prefix: str) -> tuple[int, str]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        return tempfile.mkstemp(prefix=prefix, dir=self.scratch)


SWEEP_AFTER_S = 3600.0


def sweep_scratch(folder: Path) -> None:
    """Remove staged files an earlier server process left (killed mid-transfer)."""
    cutoff = time.time() - SWEEP_AFTER_S
    for path in folder.glob("modelyard-*") if folder.is_dir() else ():
        try:
            if path.stat().st_mtime < cutoff:
                path.unlink()
        except OSError:
            pass


class Args:
    """A request's arguments (query string and JSON body together), checked as read."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self.values = values

    def get(self, name: str, default: Any = None) -> Any:
        value = self.values.get(name)
        return default if value is None else value

    def text(self, name: str, *also: str, required: bool = True, default: str = "") -> str:
        for key in (name, *also):
            value = self.values.get(key)
            if value is not None and value != "":
                if not isinstance(value, str):
                    raise invalid(f"parameter '{name}' must be a string, got {value!r}")
                return value
        if required:
            raise invalid(f"Missing value for required parameter '{name}'.")
        return default

    def integer(self, name: str, default: int | None = None, *, low: int = 0) -> int:
        value = self.values.get(name)
        if value is None or value == "":
            if default is None:
                raise invalid(f"Missing value for required parameter '{name}'.")
            return default
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise invalid(f"parameter '{name}' must be an integer, got {value!r}") from None
        if number < low:
            raise invalid(f"parameter '{name}' must be at least {low}, got {number}")
        return in_range(number, name)

    def number(self, name: str) -> float:
        value = self.values.get(name)
        if isinstance(value, bool) or value is None:
            raise invalid(f"Missing value for required parameter '{name}'.")
        if isinstance(value, str) and value.lower() in ("nan", "inf", "-inf", "infinity"):
            return float(value)
        try:
            return float(value)
        except (TypeError, ValueError):
            raise invalid(f"parameter '{name}' must be a number, got {value!r}") from None

    def items(self, name: str) -> list[Any]:
        value = self.values.get(name)
        if value is None:
            return []
        return value if isinstance(value, list) else [value]


@dataclass
class Call:
    stores: Stores
    args: Args
    key: ApiKey | None  # None when the server runs without keys


Handler = Callable[[Call], dict[str, Any]]


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str  # a Starlette path: {name} and {name:path} parameters
    permission: Permission
    handler: Handler


ENDPOINTS: list[Endpoint] = []


def endpoint(method: str, path: str, permission: Permission) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        ENDPOINTS.append(Endpoint(method, path, permission, handler))
        return handler

    return register


def finite_or_none(value: float) -> float | None:
    """modelyard keeps NaN as NULL (SQL has no NaN); ±inf are kept."""
    return None if math.isnan(value) else value


INT64 = (-(2**63), 2**63 - 1)


def in_range(number: int, what: str) -> int:
    """``number`` if a database integer holds it, else a 400 (never the database's 500)."""
    if not INT64[0] <= number <= INT64[1]:
        raise invalid(f"{what} {number} is out of range; it must fit in 64 bits")
    return number


def json_number(value: float | None) -> float | str:
    """A stored metric in MLflow's JSON: NaN (NULL here) and the infinities as strings,
    which protobuf's JSON reader takes for doubles (orjson would write null)."""
    if value is None:
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def ms(us: int | None) -> int | None:
    return None if us is None else us // 1000


def tag_list(tags: Mapping[str, Any] | None) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in sorted((tags or {}).items())]


def kv_dict(items: list[Any], what: str) -> dict[str, str]:
    """``[{"key": k, "value": v}, …]`` as a dict, each key a non-empty string."""
    out: dict[str, str] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str) or not item["key"]:
            raise invalid(f"each {what} needs a non-empty 'key', got {item!r}")
        value = item.get("value")
        out[item["key"]] = "" if value is None else str(value)
    return out
