"""What the log's records and parts look like: JSON lines in, Parquet parts out.

Three streams share one store, each under its own prefix:

- ``model=M/date=D/ID.parquet``: predictions, one row per input row, columns
  ``request_id, row, ts, model, version, variant, latency_ms, status`` and
  ``input.X`` / ``output.Y`` (the layout of the first release, so old logs read on);
- ``labels/model=M/date=D/ID.parquet``: delayed labels (``request_id, row, label, ts,
  model``);
- ``index/date=D/ID.parquet``: one row per answered request (``request_id, model,
  rows, ts``), so a label finds its request without reading the predictions.

``ID`` is the segment the rows came from (``seg-…``), a batch-scoring part's name, or
``merged-…`` after compaction. ``D`` is the UTC day of the rows' ``ts``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

PREDICTIONS = ""
LABELS = "labels/"
INDEX = "index/"


@dataclass(frozen=True)
class Stream:
    name: str
    prefix: str  # "" for predictions, "labels/" …
    by_model: bool = True

    def model_prefix(self, model: str | None) -> str:
        if not self.by_model:
            return self.prefix
        return f"{self.prefix}model={model}/" if model else f"{self.prefix}model="

    def key(self, model: str | None, day: str, name: str) -> str:
        head = f"{self.prefix}model={model}/" if self.by_model else self.prefix
        return f"{head}date={day}/{name}.parquet"


PREDICTION_STREAM = Stream("predictions", PREDICTIONS)
LABEL_STREAM = Stream("labels", LABELS)
INDEX_STREAM = Stream("index", INDEX, by_model=False)


def hash_value(value: Any, key: bytes) -> str | None:
    """What a PII field's value becomes in the log: ``h:`` and its HMAC-SHA256 under the
    workspace's PII key (``security.pii_key``), whole. Equal values stay equal (drift and
    joins still work); without the key no dictionary reverses them."""
    if value is None:
        return None
    return "h:" + hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


def pii_policy(tag: bool | str, default: str) -> str:
    """``hash`` or ``drop`` for a field tagged ``tag`` (True: the log's ``default``)."""
    return default if tag is True else str(tag)


def day_of(key: str) -> str:
    """The ``D`` of a key's ``date=D`` folder ("" when it has none)."""
    for piece in key.split("/"):
        if piece.startswith("date="):
            return piece[len("date=") :]
    return ""


def part_name(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".parquet")


def _day(ts_us: int) -> str:
    return datetime.fromtimestamp(ts_us / 1e6, tz=UTC).date().isoformat()


def prediction_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Records as written by the server (``inputs``/``outputs`` dicts) -> flat columns."""
    flat = []
    for r in rows:
        entry = {k: v for k, v in r.items() if k not in ("inputs", "outputs")}
        entry["ts"] = datetime.fromtimestamp(r["ts"] / 1e6, tz=UTC)
        entry.update({f"input.{k}": v for k, v in r["inputs"].items()})
        entry.update({f"output.{k}": v for k, v in r["outputs"].items()})
        flat.append(entry)
    return pa.Table.from_pylist(flat)


def label_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(
        [{**r, "ts": datetime.fromtimestamp(r["ts"] / 1e6, tz=UTC)} for r in rows]
    )


def prediction_parts(records: list[dict[str, Any]], name: str) -> dict[str, pa.Table]:
    """The parts (by key) of one segment of predictions, with their index part(s)."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    requests: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for r in records:
        day = _day(r["ts"])
        groups[(r["model"], day)].append(r)
        if r.get("status", 200) == 200:
            seen = requests[day].get(r["request_id"])
            if seen is None:
                requests[day][r["request_id"]] = {"model": r["model"], "rows": r["row"] + 1}
            else:
                seen["rows"] = max(seen["rows"], r["row"] + 1)
    parts = {
        PREDICTION_STREAM.key(model, day, name): prediction_table(rows)
        for (model, day), rows in groups.items()
    }
    for day, found in requests.items():
        parts[INDEX_STREAM.key(None, day, name)] = index_table(
            list(found), [v["model"] for v in found.values()], [v["rows"] for v in found.values()]
        )
    return parts


def index_table(request_ids: list[str], models: list[str], rows: list[int]) -> pa.Table:
    return pa.table(
        {
            "request_id": pa.array(request_ids, pa.string()),
            "model": pa.array(models, pa.string()),
            "rows": pa.array(rows, pa.int64()),
        }
    )


def label_parts(records: list[dict[str, Any]], name: str) -> dict[str, pa.Table]:
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[(r["model"], _day(r["ts"]))].append(r)
    return {
        LABEL_STREAM.key(model, day, name): label_table(rows)
        for (model, day), rows in groups.items()
    }
