"""Canary settings: ``[release.canary]`` in modelyard.toml, overridden per rollout; and
the checks a rollout passes before anything moves (``preflight``).

::

    [release.canary]
    steps = [10, 50, 100]     # % of requests per step: increasing, each in (0, 100]
    interval = "10m"          # time per step: 30s, 10m, 1h
    max_p99_ms = 250          # the candidate's latency p99 in a step, ms
    max_error_rate = 0.01     # share of the candidate's requests failing with a 5xx
    max_drift_share = 0.5     # share of its input columns drifted from its reference profile
    min_requests = 20         # fewer candidate requests in a step: rolled back, "no traffic"
    min_drift_rows = 200      # fewer logged rows in a step: drift is not judged there
    sinks = ["log"]           # where a rollback alert goes ([alerts.sinks.NAME])

A value given to ``run_canary`` (or on the command line) wins over the file, which wins
over the defaults below. Drift needs rows: PSI over 10 bins of n rows averages about
9/n with no drift at all, so on 50 rows a third of the columns would pass the 0.2
limit by chance; from 200 rows on, almost none do. Hence ``min_drift_rows``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modelyard import _time
from modelyard.config import CONFIG_FILE
from modelyard.errors import ConfigError, ConflictError, InvalidInputError, ModelyardError
from modelyard.registry import ModelRef, ModelVersion, get_traffic
from modelyard.release._evaluate import check_compatible

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


class CanarySettings(BaseModel):
    """How a canary rollout steps and what it counts as a breach (None: not checked)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: tuple[float, ...] = (10.0, 50.0, 100.0)
    interval_s: float = Field(600.0, gt=0)
    max_p99_ms: float | None = Field(1000.0, gt=0)
    max_error_rate: float | None = Field(0.01, ge=0, le=1)
    max_drift_share: float | None = Field(0.5, ge=0, le=1)
    min_requests: int = Field(20, ge=1)
    min_drift_rows: int = Field(200, ge=1)
    sinks: tuple[str, ...] = ("log",)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        shown = ", ".join(f"{s:g}" for s in steps) or "none"
        if (
            not steps
            or any(not 0 < s <= 100 for s in steps)
            or any(a >= b for a, b in zip(steps, steps[1:], strict=False))
        ):
            raise ValueError(f"steps ({shown}) must increase, each in (0, 100]; e.g. 10, 50, 100")
        return steps


def parse_canary_config(section: Any, source: str = CONFIG_FILE) -> dict[str, Any]:
    """Validate ``[release.canary]``; returns the settings it sets.

    Errors are one-line ``ConfigError``s naming ``source`` and the key.
    """
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: release.canary must be a table: [release.canary]")
    values = dict(section)
    if "interval" in values:
        try:
            interval = _time.parse_duration(values.pop("interval"), "interval")
        except ModelyardError as exc:
            raise ConfigError(f"{source}: release.canary.{exc.message}") from None
        values["interval_s"] = interval.total_seconds()
    try:
        CanarySettings.model_validate(values)
    except ValidationError as exc:
        raise ConfigError(f"{source}: release.canary.{_first(exc)}; fix [release.canary]") from None
    return values


def canary_settings(release: Any, given: Mapping[str, Any]) -> CanarySettings:
    """The settings of one rollout: ``given`` (None: not given) over the file's section."""
    section = release.get("canary") if isinstance(release, dict) else None
    from_file = {} if section is None else parse_canary_config(section)
    chosen = {k: v for k, v in given.items() if v is not None}
    try:
        return CanarySettings.model_validate({**from_file, **chosen})
    except ValidationError as exc:
        raise InvalidInputError(f"canary {_first(exc)}") from None


def _first(exc: ValidationError) -> str:
    err = exc.errors(include_url=False)[0]
    where = ".".join(str(p) for p in err["loc"]) or "settings"
    message = str(err["msg"]).removeprefix("Value error, ")
    if message.startswith(where):  # the validator's message names its field already
        return message
    return f"{where}: {message}"


def preflight(
    ws: Workspace, name: str, candidate: str, to: str, settings: CanarySettings
) -> tuple[ModelVersion, ModelVersion]:
    """(candidate, champion) of a rollout, or a one-line error: nothing has moved yet."""
    unknown = [s for s in settings.sinks if s not in ws.alerting.sinks]
    if unknown:
        known = ", ".join(sorted(ws.alerting.sinks))
        raise ConfigError(
            f"alert sink '{unknown[0]}' is not declared (sinks: {known}); "
            f"add [alerts.sinks.{unknown[0]}] to modelyard.toml or pick another"
        )
    if candidate == to:
        raise InvalidInputError(
            f"candidate and target are both '{to}'; roll out another alias, "
            "e.g. --candidate staging"
        )
    cand = ws.registry.get(ModelRef.parse(f"{name}@{candidate}"))
    champ = ws.registry.get(ModelRef.parse(f"{name}@{to}"))
    if cand.version == champ.version:
        raise InvalidInputError(
            f"{name}@{candidate} is version {cand.version}, which {name}@{to} already "
            f"serves; point {candidate} at a new version with "
            f"'modelyard models alias {name} {candidate} VERSION'"
        )
    check_compatible(cand, champ)  # the rule servers apply: they will serve what passes
    running = get_traffic(ws.registry, name)
    if running is not None and not running.expired():  # an expired one is taken over
        raise ConflictError(
            f"a canary of '{name}' is already running ({running.describe()}); "
            f"wait for it, or stop it with 'modelyard release canary {name} --stop'"
        )
    return cand, champ
