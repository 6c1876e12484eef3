"""How each served model is run: batching, timeout, cache and traffic policy.

Given per model in Python (``ServeOptions(ref=…)``) or in a spec file for
``modelyard serve --spec serve.toml``::

    [models.churn]
    ref = "churn@production"
    max_batch_size = 32          # unset: on or off by a timed call at load
    max_latency_ms = 2
    max_queue = 2048             # requests held per variant before 503 + Retry-After
    inline = "auto"              # call on the event loop: auto (timed), always, never
    threads = 4                  # each variant's own threads (default: --threads)
    cache = "local"
    canary = { candidate = "staging", percent = 10 }
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelyard.errors import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Canary(_Strict):
    """Send ``percent`` of requests, at random, to ``NAME@candidate``."""

    candidate: str
    percent: float = Field(gt=0, le=100)


class ABTest(_Strict):
    """Split by a hash of the request field ``key``: the same key always gets the same variant."""

    candidate: str
    key: str
    percent: float = Field(50, gt=0, lt=100)


class Shadow(_Strict):
    """Answer with the champion; also run ``NAME@candidate`` on the same input and log both."""

    candidate: str


class ServeOptions(_Strict):
    ref: str
    # None: decided per version at load, from timed calls (serving/_calls.py).
    max_batch_size: int | None = Field(None, ge=1, le=100_000)
    max_latency_ms: float = Field(0.0, ge=0, le=10_000)
    timeout_ms: float = Field(30_000, gt=0)
    # Requests one variant holds (waiting or running); past it a request is answered 503.
    max_queue: int = Field(2048, ge=1, le=1_000_000)
    # On the event loop or in the variant's threads; "auto" times the model at load.
    inline: Literal["auto", "always", "never"] = "auto"
    # Threads of each variant of this model (None: the server's --threads).
    threads: int | None = Field(None, ge=1, le=256)
    cache: Literal["off", "local", "redis"] = "off"
    cache_url: str | None = None
    cache_ttl_s: float = Field(300, gt=0)
    cache_size: int = Field(10_000, ge=1)
    canary: Canary | None = None
    ab: ABTest | None = None
    shadow: Shadow | None = None

    @model_validator(mode="after")
    def _one_policy(self) -> ServeOptions:
        given = [k for k in ("canary", "ab", "shadow") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(f"choose one traffic policy per model, not {' and '.join(given)}")
        return self

    @property
    def policy(self) -> Canary | ABTest | Shadow | None:
        return self.canary or self.ab or self.shadow


def parse_options(data: dict[str, Any], where: str) -> ServeOptions:
    try:
        return ServeOptions.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        loc = ".".join(str(p) for p in err["loc"]) or "model"
        message = err["msg"]
        if err["type"] == "extra_forbidden":  # a typo: name the key it was meant to be
            table: type[BaseModel] = ServeOptions
            for part in err["loc"][:-1]:
                inner = table.model_fields[str(part)].annotation
                table = next((t for t in get_args(inner) or (inner,) if isinstance(t, type)), table)
            keys = list(table.model_fields)
            close = difflib.get_close_matches(str(err["loc"][-1]), keys, n=1, cutoff=0.6)
            guess = f"did you mean '{close[0]}'? " if close else ""
            message = f"unknown key; {guess}the keys are {', '.join(keys)}"
        raise ConfigError(f"{where}: {loc}: {message}") from None


def load_spec(path: Path, defaults: dict[str, Any]) -> list[ServeOptions]:
    """Read ``[models.NAME]`` tables from a TOML spec; ``defaults`` fill what a table omits."""
    try:
        doc = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"serve spec {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"serve spec {path} is not valid TOML: {exc}") from None
    unknown = set(doc) - {"models"}
    if unknown or not isinstance(doc.get("models"), dict) or not doc["models"]:
        raise ConfigError(
            f"serve spec {path}: expected only [models.NAME] tables, each with ref = 'NAME@ALIAS'"
        )
    out = []
    for name, table in doc["models"].items():
        table = {**defaults, "ref": f"{name}@production", **table}
        out.append(parse_options(table, f"{path} [models.{name}]"))
    return out
