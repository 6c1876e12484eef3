"""Executor back end: where partitioned work runs (job calls, scoring, backfills), by URL.

``local`` (default): warm worker processes on this machine. ``ray``: a Ray instance
started here, or one already running in this process; ``ray://HOST:PORT``: a Ray
cluster through Ray Client. Ray is imported only when a Ray executor is opened.

Every executor runs a picklable function over a list of items and hands the results
back in the items' order; each result is settled (a value, or a ``TaskError`` naming
the task), so one failed task neither hides the others nor stops them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar, cast

from modelyard.errors import ConfigError, TaskError

__all__ = ["EXECUTORS", "Executor", "Results", "SCHEMES", "Settled", "open_executor"]

R = TypeVar("R")

EXECUTORS = ("local", "ray", "ray://HOST:PORT")
"""The executor URLs there are, as error messages list them."""


@dataclass(frozen=True)
class Settled(Generic[R]):
    """How one task ended: its ``value``, or the ``error`` that names it."""

    task: str
    value: R | None = None
    error: TaskError | None = None

    def get(self) -> R:
        """The value; raises the task's ``TaskError`` if it failed."""
        if self.error is not None:
            raise self.error
        return cast(R, self.value)


class Results(Iterator[Settled[R]], Protocol):
    """Settled tasks in submission order; ``close()`` stops the tasks not yet settled."""

    def close(self) -> None: ...


class Executor(Protocol):
    url: str

    def open(self) -> None:
        """Start (or connect to) the workers; ``map`` does it too when needed."""
        ...

    def slots(self) -> int:
        """How many tasks run at once: enough partitions keep them all busy."""
        ...

    def map(
        self,
        fn: Callable[[Any], R],
        items: Sequence[Any],
        *,
        names: Sequence[str] | None = None,
        timeout_s: float | None = None,
    ) -> Results[R]:
        """Run ``fn(item)`` for every item; yield each result once it and those before it
        have settled. Tasks unfinished ``timeout_s`` after the first result is asked for
        are stopped and settle as timed out. ``fn`` and the items travel by cloudpickle."""
        ...

    def close(self) -> None:
        """Stop the workers (a Ray instance only if this executor started it)."""
        ...


def _local(url: str, address: str | None) -> Executor:
    from modelyard.backends.executors.local import LocalExecutor

    return LocalExecutor(url)


def _ray(url: str, address: str | None) -> Executor:
    from modelyard.backends.executors.ray import RayExecutor

    if address is None and url.startswith("ray://"):
        address = url
    return RayExecutor(url, address=address)


SCHEMES: dict[str, Callable[[str, str | None], Executor]] = {"local": _local, "ray": _ray}


def open_executor(url: str, *, address: str | None = None) -> Executor:
    """Build (not yet start) the executor for ``url``.

    Args:
        address: for ``ray``, a running cluster's address as ``ray.init`` takes it
            (``HOST:6379`` from a node of the cluster); ``ray://HOST:PORT`` as the URL
            reaches one through Ray Client instead.
    """
    scheme, sep, rest = url.partition("://")
    factory = SCHEMES.get(scheme)
    if factory is None or (sep and (scheme != "ray" or not rest)):
        raise ConfigError(f"executor {url!r} is not known; use one of: {', '.join(EXECUTORS)}")
    return factory(url, address)
