"""Batch-scored predictions in the prediction log, written straight as Parquet.

``modelyard score`` may score millions of rows. Sending them through the served log's
JSON segments (``_segments.py``) would cost a Python dict and a JSON line per row, and
then the same again to ship them. So each scored chunk becomes one Parquet file in the
shipped layout (``model=M/date=D/…``, see ``_layout.py``), built column by column with
pyarrow, with the columns and types that shipping writes; readers therefore read
served and batch-scored rows as one table. A file appears by rename, whole or not at all.

One scoring job is one request: every row carries the job's request id (``score-…``),
its row number in the whole input file, and the variant ``batch``, so labels join by
(request id, row) as they do for served traffic. Latency is the chunk's scoring time.

A job logs into its own staging folder (``BatchLog.staging``, inside the spool, where
no reader looks) and ``BatchLog.publish`` moves the parts into the store, with the job's
entry in the request index, only after the output file is in place; a failed job's
parts are discarded. The log thus never holds rows that the output lacks.

A job given a ``key`` (a pipeline's "scores of 2026-04-22") has a request id derived
from it, and publishing replaces the rows an earlier job with that key logged on the
same days: a rerun of a day leaves the day's rows once, not twice. The new parts go in
first, then the old rows go (a compacted part that holds other rows too is rewritten
without them), so a reader may see both for a moment but never neither.

PII: fields tagged ``pii`` are dropped, or hashed with the served log's key (HMAC-SHA256),
so hashes of served and batch rows match. Hashing is the one step done value by value,
once per distinct value of the chunk (an HMAC has no Arrow kernel).
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from modelyard._files import atomic_path
from modelyard._time import aware
from modelyard.backends.predictions._layout import (
    INDEX_STREAM,
    hash_value,
    index_table,
    pii_policy,
)
from modelyard.backends.predictions._parts import PartStore
from modelyard.errors import InvalidInputError

VARIANT = "batch"
STAGING = ".staging"  # under the spool; readers read model=*/ and segments/

Columns: TypeAlias = pa.Table | Mapping[str, Any]


def log_batch(
    folder: Path,
    *,
    model: str,
    version: int,
    request_id: str,
    first_row: int,
    inputs: Columns,
    outputs: Columns,
    latency_ms: float,
    pii_fields: Mapping[str, bool | str] | None = None,
    pii: Literal["hash", "drop"] = "hash",
    pii_key: bytes = b"",
    ts: datetime | None = None,
) -> Path | None:
    """Write one chunk of predictions as a Parquet part under ``folder``; return its path.

    Args:
        first_row: the chunk's first row in the whole input; rows are numbered from it.
        ts: when the chunk was scored (default: now); it picks the ``date=`` partition.
    """
    ins, outs = _table(inputs), _table(outputs)
    rows = ins.num_rows if ins.num_columns else outs.num_rows
    if ins.num_columns and outs.num_columns and outs.num_rows != rows:
        raise InvalidInputError(
            f"{rows} input rows but {outs.num_rows} output rows for model '{model}'; "
            "pass the outputs of exactly these inputs"
        )
    if rows == 0:
        return None
    when = datetime.now(UTC) if ts is None else aware(ts, "ts")
    columns: dict[str, Any] = {
        "request_id": pa.repeat(pa.scalar(request_id, pa.string()), rows),
        "row": pa.array(np.arange(first_row, first_row + rows, dtype=np.int64)),
        "ts": pa.repeat(pa.scalar(when, pa.timestamp("us", tz="UTC")), rows),
        "model": pa.repeat(pa.scalar(model, pa.string()), rows),
        "version": pa.repeat(pa.scalar(version, pa.int64()), rows),
        "variant": pa.repeat(pa.scalar(VARIANT, pa.string()), rows),
        "latency_ms": pa.repeat(pa.scalar(float(latency_ms), pa.float64()), rows),
        "status": pa.repeat(pa.scalar(200, pa.int64()), rows),  # answered, as served rows
    }
    tags = pii_fields or {}
    for name, column in zip(ins.column_names, ins.columns, strict=True):
        if name in tags:
            if pii_policy(tags[name], pii) == "drop":
                continue
            if len(pii_key) < 16:
                raise ValueError("a PII field is hashed with no key; pass the log's pii_key")
            columns[f"input.{name}"] = _hashed(column, pii_key)
        else:
            columns[f"input.{name}"] = _plain(column)
    for name, column in zip(outs.column_names, outs.columns, strict=True):
        columns[f"output.{name}"] = _plain(column)
    target = folder / f"model={model}" / f"date={when.date().isoformat()}"
    target.mkdir(parents=True, exist_ok=True)
    final = target / f"part-{uuid.uuid4().hex}.parquet"
    with atomic_path(final) as tmp:
        pq.write_table(pa.table(columns), tmp)
    return final


@dataclass(frozen=True)
class BatchLog:
    """One scoring job's log: parts are staged, then published whole or discarded.

    Picklable, so Ray tasks write their chunks' parts themselves; the staging folder
    must then lie on a file system that every node shares, as the input does.
    """

    folder: Path  # the spool (PredictionLog.spool)
    request_id: str
    pii: Literal["hash", "drop"] = "hash"
    pii_key: bytes = field(default=b"", repr=False)  # travels to workers, never printed
    ts: datetime | None = None  # every row's time; None: when its chunk is scored
    replaces: bool = False  # publishing drops the rows logged before under request_id

    @classmethod
    def new(
        cls,
        folder: Path,
        *,
        pii: Literal["hash", "drop"] = "hash",
        pii_key: bytes = b"",
        ts: datetime | None = None,
        key: str | None = None,
    ) -> BatchLog:
        """A log for a new job, with a request id ``score-<32 hex digits>``: fresh, or
        derived from ``key``, whose earlier rows publishing then replaces."""
        when = None if ts is None else aware(ts, "ts")
        if key is None:
            return cls(folder.resolve(), f"score-{uuid.uuid4().hex}", pii, pii_key, when)
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return cls(folder.resolve(), f"score-{digest}", pii, pii_key, when, replaces=True)

    @property
    def staging(self) -> Path:
        return self.folder / STAGING / self.request_id

    def write(
        self,
        *,
        model: str,
        version: int,
        first_row: int,
        inputs: Columns,
        outputs: Columns,
        latency_ms: float,
        pii_fields: Mapping[str, bool | str] | None = None,
    ) -> Path | None:
        """Stage one chunk (see ``log_batch``)."""
        return log_batch(
            self.staging,
            model=model,
            version=version,
            request_id=self.request_id,
            first_row=first_row,
            inputs=inputs,
            outputs=outputs,
            latency_ms=latency_ms,
            pii_fields=pii_fields,
            pii=self.pii,
            pii_key=self.pii_key,
            ts=self.ts,
        )

    def publish(self, store: PartStore) -> int:
        """Move the staged parts into ``store``; return how many parts were moved."""
        parts = sorted(self.staging.glob("model=*/date=*/*.parquet"))
        partitions = {f"{p.parent.parent.name}/{p.parent.name}/" for p in parts}
        earlier = [k for prefix in sorted(partitions) for k in store.keys(prefix)]
        rows: dict[str, int] = {}
        days: set[str] = set()
        for part in parts:
            model = part.parent.parent.name.removeprefix("model=")
            days.add(part.parent.name.removeprefix("date="))
            last = pq.read_table(part, columns=["row"], partitioning=None)["row"]
            rows[model] = max(rows.get(model, 0), int(pc.max(last).as_py()) + 1)
            key = f"{part.parent.parent.name}/{part.parent.name}/{part.name}"
            store.put_file(key, part)
        for day in sorted(days)[:1]:  # the job is one request: one index entry
            store.put(
                INDEX_STREAM.key(None, day, self.request_id),
                index_table([self.request_id] * len(rows), list(rows), list(rows.values())),
            )
        if self.replaces:
            self._drop_earlier(store, earlier)
        self.discard()
        return len(parts)

    def _drop_earlier(self, store: PartStore, keys: list[str]) -> None:
        """Remove this request id's rows from the parts ``keys`` (those there before)."""
        for key, table in store.read(keys, columns=["request_id"]).items():
            mine = pc.equal(table["request_id"], self.request_id)
            count = pc.sum(mine).as_py() or 0
            if count == table.num_rows:
                store.delete([key])
            elif count:  # a compacted part with other jobs' rows: keep those
                whole = store.read([key]).get(key)
                if whole is not None:
                    keep = pc.invert(pc.equal(whole["request_id"], self.request_id))
                    store.put(key, whole.filter(keep))

    def discard(self) -> None:
        """Remove whatever is still staged (all of it, after a failed job)."""
        shutil.rmtree(self.staging, ignore_errors=True)
        try:
            self.staging.parent.rmdir()  # only when no other job stages beside this one
        except OSError:
            pass


def _table(columns: Columns) -> pa.Table:
    return columns if isinstance(columns, pa.Table) else pa.table(dict(columns))


def _plain(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column with the type shipping infers for it from the served log's JSON."""
    kind = column.type
    if pa.types.is_dictionary(kind):
        column = column.cast(kind.value_type)
        kind = column.type
    if pa.types.is_integer(kind):
        return column.cast(pa.int64())
    if pa.types.is_floating(kind):
        return column.cast(pa.float64())
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return column.cast(pa.string())
    if pa.types.is_timestamp(kind):
        return _iso(column)
    return column


def _iso(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Timestamps as the served log keeps them: ISO 8601 text as orjson writes it."""
    zone = column.type.tz
    column = column.cast(pa.timestamp("us", tz=zone))
    text = pc.strftime(column, format="%Y-%m-%dT%H:%M:%S" + ("%z" if zone else ""))
    # strftime gives "…:05.000000+0100"; orjson "…:05+01:00" (no fraction when it is zero).
    text = pc.replace_substring_regex(text, pattern=r"\.000000([+-]|$)", replacement=r"\1")
    return pc.replace_substring_regex(text, pattern=r"([+-]\d\d)(\d\d)$", replacement=r"\1:\2")


def _hashed(column: pa.ChunkedArray, key: bytes) -> pa.ChunkedArray:
    """``hash_value`` of every value (as served rows get), once per distinct value."""
    combined = column.combine_chunks()
    encoded = combined if pa.types.is_dictionary(combined.type) else combined.dictionary_encode()
    digests = pa.array(
        [hash_value(v, key) for v in encoded.dictionary.to_pylist()], type=pa.string()
    )
    return pa.chunked_array([digests.take(encoded.indices)])
