"""Feature lineage: a service's version, the views it reads, and a fingerprint of the data.

``service_lineage`` answers, for a feature service: which version of it, which version of
each view it reads, each view's source (passwords hidden), and a ``sha256`` over the files
a read of the view takes right now: the source's files, the view's pushed files and its
backfilled partitions (with the time ranges backfills covered or rejected, which decide
which source rows a read skips). Each file counts by its name relative to where the source
points and its bytes, read in chunks, in name order: moving the folder keeps the
fingerprint, changing one byte or adding a file changes it.

Recorded with a training set (``get_historical(..., run=run)``), it tells later which data
the run's model learned from, even after the definitions or the files have changed.

A PostgreSQL source gets no fingerprint: hashing its rows would read the whole table on
every training set. Its table or query is recorded instead, with the reason. A SQL source
runs a DuckDB query over the files it lists (``paths``): those files and the query text
are hashed. A remote path (``s3://``) is not read here either.
"""

from __future__ import annotations

import glob
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard._redact import redact
from modelyard.errors import ConflictError, InvalidInputError, NotFoundError
from modelyard.features._backfill import backfill_folder, read_coverage, read_rejected
from modelyard.features._push import push_folder
from modelyard.features._sources import FileSource, PostgresSource, SqlSource

if TYPE_CHECKING:
    from modelyard.features._definitions import FeatureService, FeatureView
    from modelyard.features._historical import _Selection
    from modelyard.features._registry import Definitions

CHUNK = 1 << 20  # bytes hashed at a time: a source larger than memory streams through
_MAGIC = frozenset("*?[")


def service_lineage(
    defs: Definitions, service: str, version: int | None = None, *, fingerprint: bool = True
) -> dict[str, Any]:
    """The lineage of feature service ``service`` (its latest version by default)."""
    from modelyard.features._historical import resolve

    found: FeatureService
    found, number = defs._get("service", service, version)
    return selection_lineage(
        resolve(defs, found), service=found.name, version=number, fingerprint=fingerprint
    )


def selection_lineage(
    selections: Sequence[_Selection],
    *,
    service: str | None,
    version: int | None,
    fingerprint: bool = True,
) -> dict[str, Any]:
    """The lineage of resolved views (``_historical.resolve``), under a service's name."""
    return {
        "service": service,
        "version": version,
        "views": [
            view_lineage(s.view, s.version, s.features, s.offline_root, fingerprint=fingerprint)
            for s in selections
        ],
    }


def view_lineage(
    view: FeatureView,
    version: int | None,
    features: Sequence[str],
    offline_root: Path | None,
    *,
    fingerprint: bool = True,
) -> dict[str, Any]:
    """One view: its version, features, source, and the fingerprint of what a read takes."""
    source = view.source
    files, reason = _source_files(source)
    pushed: list[tuple[str, Path]] = []
    backfilled: list[tuple[str, Path]] = []
    covered: list[list[str]] = []
    rejected: list[list[str]] = []
    if offline_root is not None:
        folder = push_folder(offline_root, view.name)
        pushed = [(f"push/{p.name}", p) for p in _listed(folder, "*.parquet")]
        if version is not None:
            parts = backfill_folder(offline_root, view.name, version)
            backfilled = [(f"backfill/{p.name}", p) for p in _listed(parts, "*.parquet")]
            covered = [[a.isoformat(), b.isoformat()] for a, b in read_coverage(parts)]
            rejected = [[a.isoformat(), b.isoformat()] for a, b in read_rejected(parts)]
    entry: dict[str, Any] = {
        "name": view.name,
        "version": version,
        "features": list(features),
        "source": _redacted(source.spec()),
        "fingerprint": None,
        "files": None if files is None else len(files),
        "pushed_files": len(pushed),
        "backfill_files": len(backfilled),
        "backfilled": covered,
        "rejected": rejected,
    }
    if files is None:
        entry["fingerprint_note"] = reason
    elif fingerprint:
        header = [f"backfilled {a} {b}" for a, b in covered]
        header += [f"rejected {a} {b}" for a, b in rejected]
        if isinstance(source, SqlSource):
            header.append(f"query {source.query}")
        entry["fingerprint"] = fingerprint_files([*files, *pushed, *backfilled], header)
    return entry


def training_lineage(
    defs: Definitions, features: FeatureService | str | Sequence[str], run: Any
) -> dict[str, Any]:
    """The lineage of a training set about to be built from ``features`` for ``run``.

    ``run`` is used by its methods only (``features`` sits below ``tracking``): anything
    with ``log_dataset`` and ``log_feature_lineage`` will do.
    """
    from modelyard.features._definitions import FeatureService
    from modelyard.features._historical import resolve

    if not all(callable(getattr(run, m, None)) for m in ("log_dataset", "log_feature_lineage")):
        raise InvalidInputError(
            f"run= takes a tracking run (with ws.start_run(...) as run), not {type(run).__name__}"
        )
    if getattr(run, "status", "running") != "running":  # checked now, not after the join
        raise ConflictError(
            f"run {getattr(run, 'run_id', '')} is {run.status}; build the training set inside "
            "'with ws.start_run(...) as run:'"
        )
    name: str | None = None
    if isinstance(features, FeatureService):
        name = features.name
    elif isinstance(features, str) and ":" not in features:
        name = features
    version = None
    if name is not None:
        try:
            stored, version = defs._get("service", name, None)
        except NotFoundError:  # a FeatureService object that was never applied
            stored = None
        if isinstance(features, FeatureService) and stored != features:
            version = None  # the object differs from every stored version: no number
    found = selection_lineage(resolve(defs, features), service=name, version=version)
    found["dataset"] = "training_set" if name is None else f"training_set:{name}"
    return found


def record_training_set(run: Any, lineage: dict[str, Any], result: Any) -> None:
    """Log the built training set's fingerprint as a data set of ``run``, then the lineage
    (with that fingerprint in it) through ``run.log_feature_lineage``."""
    if isinstance(result, Path):  # written with path=: read it back to fingerprint it
        import pyarrow.parquet as pq

        result = pq.read_table(result)
    if hasattr(result, "to_pandas"):  # Arrow or polars
        result = result.to_pandas()
    digest = run.log_dataset(lineage["dataset"], result, context="train")
    lineage["training_set"] = {"fingerprint": digest, "rows": len(result)}
    run.log_feature_lineage(lineage)


def fingerprint_files(files: Iterable[tuple[str, Path]], header: Sequence[str] = ()) -> str:
    """``sha256:<hex>`` over ``header`` lines, then each (name, file) in name order: the
    name, the size, the bytes (streamed)."""
    digest = hashlib.sha256()
    for line in header:
        digest.update(f"{line}\n".encode())
    for name, path in sorted(files, key=lambda item: item[0]):
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(0)
            digest.update(f"file {name} {size}\n".encode())
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _source_files(source: Any) -> tuple[list[tuple[str, Path]] | None, str]:
    """(the source's files with the names they are hashed under, or None; why not)."""
    if isinstance(source, PostgresSource):
        return None, (
            "a PostgreSQL source is not hashed (that would read the whole table on every "
            "training set); its table or query is recorded instead"
        )
    if isinstance(source, FileSource):
        return _matched(source.path, parquet_only=True)
    if isinstance(source, SqlSource):
        found: list[tuple[str, Path]] = []
        for i, path in enumerate(source.paths):
            files, reason = _matched(path, parquet_only=False)
            if files is None:
                return None, reason
            found += [(f"{i}/{name}", p) for name, p in files]
        return found, ""
    return None, f"a {type(source).__name__} is not hashed"


def _matched(path: str, *, parquet_only: bool) -> tuple[list[tuple[str, Path]] | None, str]:
    """The files ``path`` (a file, a folder or a glob) reads, named relative to it."""
    if "://" in path:
        return None, f"remote files ({redact(path)}) are not hashed; only local ones are"
    if any(c in path for c in _MAGIC):
        parts = Path(path).parts
        fixed = next((i for i, part in enumerate(parts) if _MAGIC & set(part)), len(parts))
        base = Path(*parts[:fixed]) if fixed else Path(".")
        matched = sorted(Path(p) for p in glob.glob(path, recursive=True) if Path(p).is_file())
        return [(p.relative_to(base).as_posix(), p) for p in matched], ""
    root = Path(path)
    if root.is_dir():
        pattern = "*.parquet" if parquet_only else "*"
        files = [
            p
            for p in root.rglob(pattern)
            if p.is_file() and not any(x.startswith(".") for x in p.relative_to(root).parts)
        ]
        return [(p.relative_to(root).as_posix(), p) for p in sorted(files)], ""
    if root.is_file():
        return [(root.name, root)], ""
    return None, f"{path!r} does not exist here, so its files could not be hashed"


def _listed(folder: Path, pattern: str) -> list[Path]:
    """A folder's files matching ``pattern``, not hidden (a temporary file is hidden)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith("."))


def _redacted(spec: dict[str, Any]) -> dict[str, Any]:
    """A source spec fit to store and show: URL passwords and secret pairs hidden."""
    return {key: redact(value) if isinstance(value, str) else value for key, value in spec.items()}
