"""Batch scoring on an executor: one task per run of rows; the caller joins the parts in order.

A partition is a run of whole chunks, so rows fall into the same chunks whatever the
executor and the partitions, and the output is identical; a task reads only the row
groups that hold its rows. Each task loads the model once, from the artifact store by
the version's content digest, so no database connection has to travel, and scores its
rows chunk by chunk into a part file beside the output. The caller appends the parts,
in order and batch by batch, to the output. Tasks open the input and the parts by
path: on a cluster of several machines both must lie on a file system that every node
shares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pyarrow.parquet as pq

from modelyard.errors import FieldError, ModelyardError, SchemaValidationError
from modelyard.serving._score import ScorePlan, write_scored

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.backends.executors import Executor, Settled
    from modelyard.registry import LoadedModel, ModelVersion, Registry


@dataclass(frozen=True)
class Partition:
    """The input rows ``[start, stop)``: whole chunks, so that chunks fall as they do locally."""

    start: int
    stop: int


def plan_partitions(rows: int, chunk_size: int, wanted: int) -> list[Partition]:
    """About ``wanted`` partitions of whole chunks (fewer when there are fewer chunks)."""
    if rows == 0:  # one empty partition still writes the output's columns
        return [Partition(0, 0)]
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


@dataclass(frozen=True)
class _Part:
    source: _ModelSource
    plan: ScorePlan
    rows: Partition
    dest: str


def _score_part(part: _Part) -> tuple[int, int] | _Failure:
    """One task: load the model once and score the part's rows into the file ``dest``."""
    try:
        model = part.source.load()
        return write_scored(
            model, part.plan, Path(part.dest), start=part.rows.start, stop=part.rows.stop
        )
    except ModelyardError as exc:
        errors = tuple(dict(e) for e in getattr(exc, "errors", ()))
        return _Failure(type(exc), exc.message, errors)


def score_parts(
    executor: Executor,
    registry: Registry,
    version: ModelVersion,
    plan: ScorePlan,
    dest: Path,
    *,
    on_rows: Callable[[int], None],
) -> tuple[int, int]:
    """Score ``plan`` on ``executor`` into ``dest``; return (rows, chunks)."""
    with pq.ParquetFile(plan.input) as parquet:
        rows = parquet.metadata.num_rows
    # Two partitions per slot keep every worker busy when some finish early.
    parts = plan_partitions(rows, plan.chunk_size, 2 * executor.slots())
    # Tasks load from the artifact store and cache folder; no database travels.
    source = _ModelSource(version, registry.artifacts, registry.cache_dir.resolve())
    plan = replace(plan, input=plan.input.resolve())  # workers have their own cwd
    folder = dest.resolve().parent
    paths = [folder / f"{dest.name}.part-{i:05d}" for i in range(len(parts))]
    work = [_Part(source, plan, p, str(path)) for p, path in zip(parts, paths, strict=True)]
    results = executor.map(_score_part, work, names=[f"rows {p.start}-{p.stop}" for p in parts])
    try:
        return _join(results, paths, dest, plan.chunk_size, on_rows)
    finally:
        results.close()  # stops what still runs before its part file is removed
        for path in paths:
            path.unlink(missing_ok=True)


def _join(
    results: Iterable[Settled[tuple[int, int] | _Failure]],
    paths: list[Path],
    dest: Path,
    chunk_size: int,
    on_rows: Callable[[int], None],
) -> tuple[int, int]:
    """Append the parts to ``dest`` in partition order, each as soon as its turn comes."""
    rows = chunks = 0
    writer: pq.ParquetWriter | None = None
    try:
        for path, settled in zip(paths, results, strict=True):
            outcome = settled.get()
            if isinstance(outcome, _Failure):
                raise outcome.error()
            writer = _append(path, writer, dest, chunk_size)
            path.unlink()
            rows += outcome[0]
            chunks += outcome[1]
            on_rows(outcome[0])
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
