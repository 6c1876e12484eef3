"""Batch scoring on Ray: one task per range of rows; the driver joins the parts in order.

A partition is a run of whole chunks, so rows fall into the same chunks as with the
local executor and the output is identical; a task reads only the row groups that
hold its rows. Each task loads the model once, from the artifact store by the
version's content digest, so no database connection has to travel, and scores its
rows chunk by chunk into a part file beside the output. The driver appends the
parts, in order and batch by batch, to the output. Tasks open the
input and the parts by path: on a cluster of several machines both must lie on a
file system that every node shares.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pyarrow.parquet as pq

from modelyard.errors import (
    BackendUnavailableError,
    ConfigError,
    FieldError,
    ModelyardError,
    SchemaValidationError,
)
from modelyard.serving._score import ScorePlan, write_scored

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.registry import LoadedModel, ModelVersion, Registry

LOCAL_CPUS = 2


def require_ray() -> Any:
    """The ``ray`` module, imported only when the Ray executor is asked for."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            "the 'ray' executor needs Ray, which is not installed; "
            "run pip install 'modelyard[ray]' or use the local executor"
        ) from None
    return ray


@dataclass(frozen=True)
class Partition:
    """The input rows ``[start, stop)``: whole chunks, so that chunks fall as they do locally."""

    start: int
    stop: int


def plan_partitions(rows: int, chunk_size: int, wanted: int) -> list[Partition]:
    """About ``wanted`` partitions of whole chunks (fewer when there are fewer chunks)."""
    chunks = math.ceil(rows / chunk_size)
    step = math.ceil(chunks / max(1, min(wanted, chunks))) * chunk_size
    return [Partition(start, min(rows, start + step)) for start in range(0, rows, step)]


@dataclass(frozen=True)
class _ModelSource:
    version: ModelVersion
    artifacts: ArtifactStore
    cache: Path

    def load(self) -> LoadedModel:
        from modelyard.registry import Registry

        # Loading a ModelVersion reads artifacts only, never the metadata database.
        return Registry(cast(Any, None), self.artifacts, self.cache).load(self.version)


@dataclass(frozen=True)
class _Failure:
    """A ModelyardError sent back as data: some (SchemaValidationError) do not unpickle."""

    kind: type[ModelyardError]
    message: str
    errors: tuple[dict[str, Any], ...] = ()

    def error(self) -> ModelyardError:
        if issubclass(self.kind, SchemaValidationError):
            exc: ModelyardError = SchemaValidationError([FieldError(**e) for e in self.errors])
            exc.message = self.message
            exc.args = (self.message,)
            return exc
        return self.kind(self.message)


def _score_part(
    source: _ModelSource, plan: ScorePlan, part: Partition, dest: str
) -> tuple[int, int] | _Failure:
    """One Ray task: load the model once and score ``part`` into the file ``dest``."""
    try:
        model = source.load()
        return write_scored(model, plan, Path(dest), start=part.start, stop=part.stop)
    except ModelyardError as exc:
        errors = tuple(dict(e) for e in getattr(exc, "errors", ()))
        return _Failure(type(exc), exc.message, errors)


def score_with_ray(
    registry: Registry,
    version: ModelVersion,
    plan: ScorePlan,
    dest: Path,
    *,
    address: str | None,
    on_rows: Callable[[int], None],
) -> tuple[int, int]:
    """Score ``plan`` on Ray into ``dest``; return (rows, chunks)."""
    ray = require_ray()
    started = not ray.is_initialized()
    if started:
        _init(ray, address)
    refs: list[Any] = []
    paths: list[Path] = []
    try:
        with pq.ParquetFile(plan.input) as parquet:
            rows = parquet.metadata.num_rows
        # Two partitions per CPU keep every CPU busy when some finish early.
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        parts = plan_partitions(rows, plan.chunk_size, 2 * cpus)
        # Tasks load from the artifact store and cache folder; no database travels.
        source = _ModelSource(version, registry.artifacts, registry.cache_dir.resolve())
        plan = replace(plan, input=plan.input.resolve())  # workers have their own cwd
        task = ray.remote(num_cpus=1)(_score_part)
        folder = dest.resolve().parent
        paths = [folder / f"{dest.name}.part-{i:05d}" for i in range(len(parts))]
        refs = [
            task.remote(source, plan, p, str(path)) for p, path in zip(parts, paths, strict=True)
        ]
        return _join(ray, refs, paths, dest, plan.chunk_size, on_rows)
    except BaseException:
        if refs and not started:
            # Cancel only what still runs: Ray 2.60 aborts the driver process when a cancel
            # meets a task that has just finished ("Tried to complete task that was not
            # pending"), which we saw once in CI (ray-project/ray#54846, a cancel racing the
            # task's completion). A Ray we started is shut down below instead.
            _, running = ray.wait(refs, num_returns=len(refs), timeout=0, fetch_local=False)
            for ref in running:
                ray.cancel(ref)
            # Let cancelled tasks stop before their part files are removed.
            ray.wait(refs, num_returns=len(refs), timeout=30, fetch_local=False)
        raise
    finally:
        if started:
            ray.shutdown()  # stops every task of ours before their part files are removed
        for path in paths:
            path.unlink(missing_ok=True)


def _init(ray: Any, address: str | None) -> None:
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING)
        else:
            ray.init(num_cpus=LOCAL_CPUS, include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as exc:
        raise BackendUnavailableError(
            f"cannot connect to Ray at {address!r} ({str(exc).splitlines()[0]}); start a cluster "
            "with 'ray start --head' or leave out the address to start a local one"
        ) from None


def _join(
    ray: Any,
    refs: list[Any],
    paths: list[Path],
    dest: Path,
    chunk_size: int,
    on_rows: Callable[[int], None],
) -> tuple[int, int]:
    """Append the parts to ``dest`` in partition order, each as soon as its turn comes."""
    position = {ref: i for i, ref in enumerate(refs)}
    finished: dict[int, tuple[int, int]] = {}
    pending = list(refs)
    appended = rows = chunks = 0
    writer: pq.ParquetWriter | None = None
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                outcome = ray.get(ref)
                if isinstance(outcome, _Failure):
                    raise outcome.error()
                finished[position[ref]] = outcome
                on_rows(outcome[0])
            while appended in finished:
                writer = _append(paths[appended], writer, dest, chunk_size)
                paths[appended].unlink()
                rows += finished[appended][0]
                chunks += finished[appended][1]
                appended += 1
    finally:
        if writer is not None:
            writer.close()
    return rows, chunks


def _append(
    part: Path, writer: pq.ParquetWriter | None, dest: Path, chunk_size: int
) -> pq.ParquetWriter:
    with pq.ParquetFile(part) as parquet:
        if writer is None:
            writer = pq.ParquetWriter(dest, parquet.schema_arrow)
        for batch in parquet.iter_batches(batch_size=chunk_size):
            if batch.schema != writer.schema:
                batch = batch.cast(writer.schema)
            writer.write_batch(batch)
    return writer
