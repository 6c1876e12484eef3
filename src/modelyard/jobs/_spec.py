"""What a job is: a Python function with a schedule, retries, timeout, SLA and sinks.

A job is declared once, either with the ``@job`` decorator in a module that
``modelyard.toml`` lists under ``jobs.modules``, or as a ``[jobs.NAME]`` table naming
its function (``function = "pipelines:nightly"``). Both end as the same ``JobSpec``;
the function is referred to by ``module:qualname`` so that a worker process, or a Ray
task on another machine, can import it by name.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from modelyard import _time
from modelyard.backends.executors import open_executor
from modelyard.config import register_table
from modelyard.errors import ConfigError, InvalidInputError, ModelyardError, NotFoundError
from modelyard.jobs._cron import Schedule

Catchup = Literal["all", "latest"]
F = TypeVar("F", bound=Callable[..., Any])
CATCHUP: tuple[Catchup, ...] = ("all", "latest")


@dataclass(frozen=True)
class JobSpec:
    """A declared job. Durations are seconds; ``None`` means "no limit" or "none"."""

    name: str
    function: str
    schedule: Schedule | None = None
    retries: int = 0
    retry_delay_s: float = 30.0
    max_retry_delay_s: float = 3600.0
    timeout_s: float | None = None
    sla_s: float | None = None
    sinks: tuple[str, ...] = ("log",)
    catchup: Catchup = "all"
    executor: str | None = None  # None: the workspace's executor.url
    partitions: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    description: str = ""
    after: tuple[str, ...] = ()  # jobs whose slots due by this one's must have ended first

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait after failed ``attempt`` (1-based): doubling, capped."""
        return float(min(self.retry_delay_s * 2 ** (attempt - 1), self.max_retry_delay_s))


# Filled by @job as job modules are imported, by module: a module imported once (and
# cached in sys.modules) still yields its jobs to every later ``load_jobs``.
_DECLARED: dict[str, dict[str, JobSpec]] = {}

_OPTIONS = {
    "function": "module:function to call",
    "schedule": "cron (5 fields, or 6 with seconds last)",
    "retries": "attempts after the first",
    "retry_delay": "first wait between attempts (doubles each time)",
    "max_retry_delay": "longest wait between attempts",
    "timeout": "an attempt running longer is stopped",
    "sla": "alert when a slot has not succeeded this long after its interval ends",
    "sinks": "alert sinks of [alerts.sinks]",
    "catchup": "missed slots after downtime: all | latest",
    "executor": "local | ray | ray://HOST:PORT (default: the executor.url setting)",
    "partitions": "run the function once per partition",
    "params": "a table passed to the function as ctx.params",
    "inputs": "what the job reads (shown by 'jobs list')",
    "outputs": "what the job writes (shown by 'jobs list')",
    "description": "one line",
    "after": "jobs whose slots due by this job's slot end first (a scheduler's ordering)",
}


def job(
    name: str | None = None,
    *,
    schedule: str | None = None,
    retries: int = 0,
    retry_delay: str = "30s",
    max_retry_delay: str = "1h",
    timeout: str | None = None,
    sla: str | None = None,
    sinks: Sequence[str] = ("log",),
    catchup: Catchup = "all",
    executor: str | None = None,
    partitions: Sequence[str] = (),
    params: Mapping[str, Any] | None = None,
    inputs: Sequence[str] = (),
    outputs: Sequence[str] = (),
    after: Sequence[str] = (),
) -> Callable[[F], F]:
    """Declare the decorated function ``fn(ctx: JobContext)`` as a job."""

    def declare(fn: F) -> F:
        job_name = name or fn.__name__.replace("_", "-")
        raw = {
            "function": f"{fn.__module__}:{fn.__qualname__}",
            "schedule": schedule,
            "retries": retries,
            "retry_delay": retry_delay,
            "max_retry_delay": max_retry_delay,
            "timeout": timeout,
            "sla": sla,
            "sinks": list(sinks),
            "catchup": catchup,
            "executor": executor,
            "partitions": list(partitions),
            "params": dict(params or {}),
            "inputs": list(inputs),
            "outputs": list(outputs),
            "after": list(after),
            "description": (fn.__doc__ or "").strip().split("\n")[0],
        }
        spec = parse_job(job_name, {k: v for k, v in raw.items() if v is not None}, "@job")
        _DECLARED.setdefault(fn.__module__, {})[job_name] = spec
        return fn

    return declare


def parse_job(name: str, raw: Mapping[str, Any], source: str) -> JobSpec:
    """Validate one job's options; errors name ``source`` and the job."""
    where = f"{source}: job {name!r}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table with at least function = 'module:function'")
    unknown = sorted(set(raw) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown option {unknown[0]!r}; options: {', '.join(_OPTIONS)}")
    function = raw.get("function")
    if not isinstance(function, str) or function.count(":") != 1:
        raise ConfigError(f"{where}: function must be 'module:function', got {function!r}")
    try:
        schedule = Schedule.parse(raw["schedule"]) if raw.get("schedule") else None
        catchup = raw.get("catchup", "all")
        if catchup not in CATCHUP:
            raise InvalidInputError(f"catchup must be one of {', '.join(CATCHUP)}, not {catchup!r}")
        executor = raw.get("executor")
        if executor is not None:
            if not isinstance(executor, str):
                raise InvalidInputError(f"executor must be a string, not {executor!r}")
            open_executor(executor)  # builds nothing but the object: checks the name
        retries = raw.get("retries", 0)
        if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
            raise InvalidInputError(f"retries must be a whole number >= 0, not {retries!r}")
        return JobSpec(
            name=name,
            function=function,
            schedule=schedule,
            retries=retries,
            retry_delay_s=_seconds(raw.get("retry_delay", "30s"), "retry_delay"),
            max_retry_delay_s=_seconds(raw.get("max_retry_delay", "1h"), "max_retry_delay"),
            timeout_s=_seconds(raw["timeout"], "timeout") if raw.get("timeout") else None,
            sla_s=_seconds(raw["sla"], "sla") if raw.get("sla") else None,
            sinks=_strings(raw.get("sinks", ["log"]), "sinks"),
            catchup=catchup,
            executor=executor,
            partitions=_strings(raw.get("partitions", []), "partitions"),
            params=dict(_table(raw.get("params", {}), "params")),
            inputs=_strings(raw.get("inputs", []), "inputs"),
            outputs=_strings(raw.get("outputs", []), "outputs"),
            description=str(raw.get("description", "")),
            after=_strings(raw.get("after", []), "after"),
        )
    except ModelyardError as exc:
        raise ConfigError(f"{where}: {exc.message}") from None


def _seconds(value: Any, what: str) -> float:
    return _time.parse_duration(value, what).total_seconds()


def _strings(value: Any, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidInputError(f"{what} must be a list of strings, not {value!r}")
    return tuple(value)


def _table(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"{what} must be a table, not {value!r}")
    return value


def check_job_tables(section: Any, source: str) -> dict[str, JobSpec]:
    """The ``[jobs.NAME]`` tables of ``[jobs]``, validated (``@job`` modules not imported)."""
    if not isinstance(section, Mapping):
        raise ConfigError(f"{source}: 'jobs' must be a table of [jobs.NAME] tables")
    modules = section.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(f"{source}: jobs.modules must be a list of module names")
    jobs = {n: parse_job(n, raw, source) for n, raw in section.items() if n != "modules"}
    if not modules:  # every job is here: check 'after' now (else once the modules are in)
        check_order(jobs, source)
    return jobs


register_table("jobs", lambda body, source, root: check_job_tables(body, source))


def load_jobs(section: Mapping[str, Any], root: Path, source: str) -> dict[str, JobSpec]:
    """Every job of the workspace: ``[jobs.NAME]`` tables and ``@job``s of ``jobs.modules``."""
    jobs = check_job_tables(section, source)
    for module in section.get("modules", []):
        import_module(module, root, f"{source}: jobs.modules")
        declared = _DECLARED.get(module, {})
        twice = sorted(set(declared) & set(jobs))
        if twice:
            raise ConfigError(
                f"{source}: job {twice[0]!r} is declared both as [jobs.{twice[0]}] and with "
                "@job; keep one"
            )
        jobs.update(declared)
    check_order(jobs, source)
    return dict(sorted(jobs.items()))


def check_order(jobs: Mapping[str, JobSpec], source: str) -> None:
    """Every ``after`` names another scheduled job, and no job waits for itself."""
    for spec in jobs.values():
        for upstream in spec.after:
            found = jobs.get(upstream)
            if found is None or found.schedule is None or spec.schedule is None:
                raise ConfigError(
                    f"{source}: job {spec.name!r}: after names {upstream!r}, which is not a "
                    "scheduled job of this workspace; 'after' orders scheduled jobs only "
                    f"(both need a schedule; jobs: {', '.join(sorted(jobs))})"
                )
    for spec in jobs.values():
        seen: set[str] = set()
        todo = list(spec.after)
        while todo:
            name = todo.pop()
            if name == spec.name:
                raise ConfigError(
                    f"{source}: job {spec.name!r} waits for itself through 'after'; remove "
                    "one of the 'after' entries that lead back to it"
                )
            if name not in seen:
                seen.add(name)
                todo += jobs[name].after


def import_module(module: str, root: Path, source: str) -> Any:
    """Import ``module`` with the workspace folder first on the path."""
    folder = str(root)
    if sys.path[:1] != [folder]:
        if folder in sys.path:
            sys.path.remove(folder)
        sys.path.insert(0, folder)
    cached = sys.modules.get(module)
    origin = getattr(cached, "__file__", None) or ""
    if cached is not None and not origin.startswith(folder) and "site-packages" not in origin:
        # Another workspace's module of the same name (a test run, a notebook): not ours.
        del sys.modules[module]
        _DECLARED.pop(module, None)
    try:
        return importlib.import_module(module)
    except ModelyardError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"{source}: cannot import {module!r} ({type(exc).__name__}: {exc}); check that "
            f"{module.replace('.', '/')}.py lies in {root} and imports cleanly"
        ) from None


def resolve(function: str, root: Path) -> Callable[..., Any]:
    """The callable a ``module:qualname`` reference names."""
    module_name, _, qualname = function.partition(":")
    target: Any = import_module(module_name, root, f"function {function!r}")
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            raise NotFoundError(
                f"function {function!r}: {module_name} has no {qualname!r}; check the name"
            )
    if not callable(target):
        raise ConfigError(f"function {function!r} is not callable")
    return target  # type: ignore[no-any-return]
