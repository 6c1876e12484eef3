"""The holdout set a run keeps, so that a release can judge its model on rows it never saw.

The rows are stored as a Parquet artifact of the run (``holdout/NAME.parquet``) and the
data set is logged with context ``"holdout"`` (fingerprint, row count, schema), so the
lineage of a release check reaches the exact rows it was judged on. The target column
travels inside the Parquet file's metadata: the file alone says which column is the label.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from modelyard.contracts import as_frame
from modelyard.errors import InvalidInputError

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.tracking._query import Tracking
    from modelyard.tracking._run import Run

HOLDOUT_CONTEXT = "holdout"
_TARGET_KEY = b"modelyard.target"


@dataclass(frozen=True)
class Holdout:
    """Labelled rows to evaluate a model on, and where they came from."""

    frame: pd.DataFrame
    target: str | None
    source: str
    fingerprint: str | None = None


def _artifact_path(name: str) -> str:
    return f"holdout/{name}.parquet"


def log_holdout(run: Run, data: Any, *, target: str, name: str = "holdout") -> str:
    """Keep ``data`` (features and the ``target`` column) with ``run`` as its holdout set.

    ``modelyard release check`` evaluates candidate and champion on these rows when no
    other set is given. Returns the data set's fingerprint.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    frame = as_frame(data)
    if target not in frame.columns:
        raise InvalidInputError(
            f"holdout has no target column {target!r} (columns: {', '.join(map(str, frame))}); "
            "pass target= the name of the label column"
        )
    table = pa.Table.from_pandas(frame, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), _TARGET_KEY: target.encode()}
    )
    with tempfile.TemporaryDirectory(prefix="modelyard-holdout-") as tmp:
        path = Path(tmp) / f"{name}.parquet"
        pq.write_table(table, path)
        run.log_artifact(path, _artifact_path(name))
    return run.log_dataset(name, frame, context=HOLDOUT_CONTEXT)


def read_holdout(runs: Tracking, artifacts: ArtifactStore, run_id: str) -> Holdout | None:
    """The holdout set ``run_id`` logged with ``log_holdout``, or None when it has none."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    info = runs.get(run_id)
    declared = [d for d in info.datasets if d["context"] == HOLDOUT_CONTEXT]
    stored = {a["path"]: a["digest"] for a in info.artifacts}
    found = [d for d in declared if _artifact_path(d["name"]) in stored]
    if not found:
        return None
    if len(found) > 1:
        names = ", ".join(repr(d["name"]) for d in found)
        raise InvalidInputError(
            f"run {run_id} keeps {len(found)} holdout sets ({names}); "
            "choose one with --holdout FILE"
        )
    dataset = found[0]
    table = pq.read_table(pa.BufferReader(artifacts.get(stored[_artifact_path(dataset["name"])])))
    target = (table.schema.metadata or {}).get(_TARGET_KEY)
    return Holdout(
        frame=table.to_pandas(),
        target=None if target is None else target.decode(),
        source=f"holdout {dataset['name']!r} of run {run_id}",
        fingerprint=dataset["fingerprint"],
    )


def read_holdout_file(path: str | os.PathLike[str]) -> Holdout:
    """Labelled rows from a CSV or Parquet file (``--holdout FILE``)."""
    from modelyard.contracts import fingerprint

    file = Path(path)
    if not file.is_file():
        raise InvalidInputError(f"holdout file {str(file)!r} does not exist; check the path")
    suffix = file.suffix.lower()
    if suffix == ".csv":
        frame = pd.read_csv(file)
        target = None
    elif suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        table = pq.read_table(file)
        frame = table.to_pandas()
        raw = (table.schema.metadata or {}).get(_TARGET_KEY)
        target = None if raw is None else raw.decode()
    else:
        raise InvalidInputError(
            f"holdout file {str(file)!r} is neither CSV nor Parquet; give a .csv or .parquet file"
        )
    return Holdout(frame=frame, target=target, source=str(file), fingerprint=fingerprint(frame))
