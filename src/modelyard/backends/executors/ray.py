"""The ``ray`` executor: one Ray task per item, on a local instance or a cluster.

``ray`` starts a local instance when this process has none (and stops it on
``close``); a Ray already initialized in the process (a notebook's, a test session's)
is used and left running. ``ray://HOST:PORT`` connects through Ray Client. Files a task
opens by path must lie on a file system that every node shares.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Generator
from typing import Any

from modelyard.backends.executors import Settled
from modelyard.backends.executors._task import PayloadExecutor, run, settle
from modelyard.errors import BackendUnavailableError, ConfigError, TaskError

__all__ = ["RayExecutor", "import_ray"]


def import_ray() -> Any:
    """The ``ray`` module, imported only when a Ray executor is opened."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the 'ray' executor needs Ray, which is not installed; "
            "run pip install 'modelyard[ray]' or use the 'local' executor"
        ) from None
    return ray


class RayExecutor(PayloadExecutor):
    """Ray tasks of one CPU each; ``num_cpus`` caps a local instance (default: all CPUs)."""

    def __init__(
        self, url: str = "ray", *, address: str | None = None, num_cpus: int | None = None
    ) -> None:
        self.url = url
        self.address = address
        self.num_cpus = num_cpus
        self._ray: Any = None
        self._remote: Any = None
        self._owns = False

    def __repr__(self) -> str:
        return f"RayExecutor({self.url!r})"

    def open(self) -> None:
        if self._ray is not None:
            return
        ray = import_ray()
        if not ray.is_initialized():
            try:
                if self.address:
                    ray.init(address=self.address, logging_level=logging.WARNING)
                else:
                    ray.init(
                        num_cpus=self.num_cpus,
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                    )
            except ConnectionError as exc:
                raise BackendUnavailableError(
                    f"cannot connect to Ray at {self.address!r} ({str(exc).splitlines()[0]}); "
                    "start a cluster with 'ray start --head', or use executor 'ray' to start "
                    "a local one"
                ) from None
            self._owns = True
        self._ray = ray
        # One remote function for every task: the task's own function travels pickled.
        self._remote = ray.remote(num_cpus=1, max_retries=0)(run)

    def slots(self) -> int:
        self.open()
        return max(1, int(self._ray.cluster_resources().get("CPU", 1)))

    def _run(
        self,
        names: list[str],
        paths: tuple[str, ...],
        payloads: list[bytes],
        timeout_s: float | None,
    ) -> Generator[Settled[Any], None, None]:
        ray = self._ray
        refs = [self._remote.remote(paths, payload) for payload in payloads]
        index = {ref: i for i, ref in enumerate(refs)}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        stopped_after = "" if timeout_s is None else f"stopped after {timeout_s:g} s"
        settled: dict[int, Settled[Any]] = {}
        pending = list(refs)
        try:
            for i in range(len(refs)):
                while i not in settled:
                    left = None if deadline is None else max(0.0, deadline - time.monotonic())
                    ready, pending = ray.wait(pending, num_returns=1, timeout=left)
                    if not ready:  # the deadline passed: what still runs is stopped
                        ready, stopped = self._cancel(pending, force=True)
                        for ref in stopped:
                            j = index[ref]
                            error = TaskError(names[j], stopped_after, timed_out=True)
                            settled[j] = Settled(names[j], error=error)
                        pending = []
                    for ref in ready:
                        settled[index[ref]] = self._get(names[index[ref]], ref)
                yield settled.pop(i)
        finally:
            # Let cancelled tasks stop before the caller removes what they write. The cancel
            # is repeated: one that meets a task while Ray hands it to a worker can be lost.
            give_up = time.monotonic() + 30
            while pending and time.monotonic() < give_up:
                _, pending = self._cancel(pending, force=False)
                if pending:
                    ray.wait(pending, num_returns=len(pending), timeout=1, fetch_local=False)

    def _get(self, name: str, ref: Any) -> Settled[Any]:
        try:
            answer = self._ray.get(ref)
        except Exception as exc:  # the task's process died, or Ray failed it
            line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return Settled(name, error=TaskError(name, line))
        value, error = settle(name, answer)
        return Settled(name, value, error)

    def _cancel(self, refs: list[Any], *, force: bool) -> tuple[list[Any], list[Any]]:
        """Cancel the tasks of ``refs`` that have not finished: (finished, cancelled).

        Only what still runs is cancelled: Ray 2.60 aborts the driver process when a
        cancel meets a task that has just finished ("Tried to complete task that was not
        pending", ray-project/ray#54846), which we saw once in CI.
        """
        done, running = self._ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
        for ref in running:
            self._ray.cancel(ref, force=force)
        return done, running

    def close(self) -> None:
        if self._ray is not None and self._owns:
            self._ray.shutdown()
        self._ray = self._remote = None
        self._owns = False
