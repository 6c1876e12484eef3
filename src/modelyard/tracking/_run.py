"""A training run: params, metrics (batched), tags, artifacts, datasets, status.

A run is two transactions when used plainly: one on start (run row, params, tags,
environment) and one on end (buffered metrics, status). Metrics buffer in memory, so a
training loop pays for a commit per batch of steps, not per step; a background thread
(``_keeper.py``) flushes the buffer every ``FLUSH_SECONDS`` (0.5 s), so a
``log_metric`` that returned is stored within a second even if the process is then
killed, and the buffer is also flushed when it fills, at ``end`` and at exit.

While it runs, the run holds a lease (``runs.lease_until``) renewed every third of
``lease_s``; a run whose process died stops renewing, and readers mark it failed
once the lease lapses. A process that exits without ending its run ends it at exit:
failed if an uncaught exception ended the process, finished otherwise.
"""

from __future__ import annotations

import atexit
import json
import math
import os
import sys
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

from modelyard import _time
from modelyard.backends.artifacts import put_tree
from modelyard.contracts import Schema, as_frame, fingerprint
from modelyard.errors import ConflictError, InvalidInputError
from modelyard.tracking import _environment
from modelyard.tracking._git import GitProbe
from modelyard.tracking._keeper import Keeper
from modelyard.tracking._run_store import RunStore, SqlRunStore
from modelyard.tracking._seed import current_seed

if TYPE_CHECKING:
    from modelyard.backends.artifacts import ArtifactStore
    from modelyard.backends.metadata import MetadataStore

# The tag that holds the feature lineage of the run's training sets (log_feature_lineage).
FEATURE_LINEAGE_TAG = "features.lineage"
FLUSH_ROWS = 1000
FLUSH_SECONDS = 0.5
LEASE_S = 30.0


class Run:
    """An active run; use as a context manager (``with ws.start_run(...) as run:``)."""

    def __init__(
        self,
        metadata: MetadataStore | RunStore,
        artifacts: ArtifactStore,
        *,
        name: str,
        experiment: str,
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
        seed: int | None = None,
        code_folder: str | Path = ".",
        lease_s: float = LEASE_S,
        flush_s: float = FLUSH_SECONDS,
    ) -> None:
        self.run_id = uuid.uuid4().hex
        self.name = name
        self.experiment = experiment
        self.seed = seed
        self.status = "pending"
        # A metadata store (the rows go to its database) or a RunStore (the team server's).
        self._store: RunStore = (
            cast("RunStore", metadata)
            if hasattr(metadata, "write_metrics")
            else SqlRunStore(metadata)
        )
        self._artifacts = artifacts
        self._initial_params = dict(params or {})
        self._initial_tags = dict(tags or {})
        self._code_folder = code_folder
        self._params: dict[str, str] = {}
        self.lease_s = lease_s
        self.flush_s = flush_s
        self._buffer: list[dict[str, Any]] = []
        self._buffer_lock = threading.Lock()  # the keeper thread flushes too
        self._keeper: Keeper | None = None
        self._pid = 0  # the process that started the run (and may end it at exit)
        self._git: GitProbe | None = None
        self._feature_lineage: dict[str, dict[str, Any]] = {}  # by service, as logged

    def __repr__(self) -> str:
        return f"Run(run_id={self.run_id!r}, name={self.name!r}, status={self.status!r})"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Run:
        if self.status != "pending":
            raise ConflictError(f"run {self.run_id} was already started")
        if not 0 < self.lease_s < math.inf:  # also refuses nan
            raise InvalidInputError(
                f"lease_s = {self.lease_s!r}: expected seconds above 0 (tracking.lease_s)"
            )
        environment, self._git = _environment.capture(self._code_folder)
        seed = self.seed if self.seed is not None else current_seed()
        self.seed = seed
        params = _stringify(self._initial_params, "param")
        tags = _stringify(self._initial_tags, "tag")
        row = {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "name": self.name,
            "status": "running",
            "start_time": _time.now_us(),
            "lease_until": self._lease_until(),
            "seed": seed,
            "git_commit": self._git.commit,
            "environment": environment,
        }
        self._store.start(row, params, tags)
        self._params.update(params)
        self.status = "running"
        self._keeper = Keeper(
            f"modelyard-run-{self.run_id[:8]}",
            self.flush,
            self._renew,
            flush_s=self.flush_s,
            renew_s=self.lease_s / 3,
        )
        self._keeper.start()
        self._pid = os.getpid()
        atexit.register(self._end_at_exit)
        return self

    def end(self, status: str = "finished", error: str | None = None) -> None:
        """Flush buffered metrics and record the final status in one transaction."""
        if self.status != "running":
            return
        if self._keeper is not None:
            self._keeper.stop()
            self._keeper = None
        atexit.unregister(self._end_at_exit)
        commit = self._git.finish() if self._git is not None else None
        with self._buffer_lock:
            rows, self._buffer = self._buffer, []
        try:
            values = {
                "status": status,
                "end_time": _time.now_us(),
                "error": error,
                "git_commit": commit,
            }
            self._store.end(self.run_id, rows, values)
        except BaseException:
            self._put_back(rows)
            raise
        self.status = status

    def _lease_until(self) -> int:
        return _time.now_us() + int(self.lease_s * 1_000_000)

    def _renew(self) -> None:
        self._store.renew(self.run_id, self._lease_until())

    def _end_at_exit(self) -> None:
        """The process is exiting with this run still running: store what is buffered
        and end it, failed if an uncaught exception is why the process ends."""
        if os.getpid() != self._pid:  # a forked child exiting: the run is its parent's
            return
        error = getattr(sys, "last_value", None)
        try:
            if error is None:
                self.end("finished")
            else:
                self.end("failed", f"{type(error).__name__}: {error}".strip()[:4000])
        except Exception:  # the store may be closed or gone; its lease then lapses
            pass

    def __enter__(self) -> Run:
        if self.status == "pending":
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is None:
            self.end("finished")
        else:
            message = f"{type(exc).__name__}: {exc}".strip()
            self.end("failed", message[:4000])

    # -- params and tags -----------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Params are write-once: logging a different value for a key is an error."""
        self._require_running()
        new: dict[str, str] = {}
        for key, value in _stringify(params, "param").items():
            old = self._params.get(key)
            if old is None:
                new[key] = value
            elif old != value:
                raise ConflictError(
                    f"param '{key}' of run {self.run_id} is already {old!r}, not {value!r}; "
                    "params are immutable: log a metric or tag for values that change"
                )
        if new:
            self._store.add_params(self.run_id, new)
            self._params.update(new)

    def set_tag(self, key: str, value: Any) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        self._require_running()
        self._store.set_tags(self.run_id, _stringify(tags, "tag"))

    # -- metrics -------------------------------------------------------------------------
    def log_metric(self, key: str, value: float, *, step: int = 0) -> None:
        self.log_metrics({key: value}, step=step)

    def log_metrics(self, metrics: Mapping[str, float], *, step: int = 0) -> None:
        """Buffer metric values for ``step``; they are written in batches, and within a
        second of this call returning (by a background thread), so a process killed
        after that loses none of them."""
        self._require_running()
        ts = _time.now_us()
        rows = []
        for key, value in metrics.items():
            _check_key(key, "metric")
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise InvalidInputError(
                    f"metric '{key}' must be a number, got {type(value).__name__}"
                ) from None
            rows.append(
                {
                    "run_id": self.run_id,
                    "key": key,
                    "value": None if math.isnan(number) else number,
                    "step": int(step),
                    "timestamp": ts,
                }
            )
        with self._buffer_lock:
            self._buffer.extend(rows)
            full = len(self._buffer) >= FLUSH_ROWS
        if full:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics now."""
        with self._buffer_lock:
            rows, self._buffer = self._buffer, []
        if not rows:
            return
        try:
            self._store.write_metrics(rows)
        except BaseException:  # not stored: keep them for the next flush
            self._put_back(rows)
            raise

    def _put_back(self, rows: list[dict[str, Any]]) -> None:
        with self._buffer_lock:
            self._buffer[:0] = rows

    # -- datasets and artifacts ----------------------------------------------------------
    def log_dataset(self, name: str, data: Any, *, context: str = "train") -> str:
        """Record a data set the run used: its content fingerprint, row count and schema."""
        self._require_running()
        _check_key(name, "dataset")
        frame = as_frame(data)
        digest = fingerprint(data)
        schema = Schema.infer(frame).to_json_dict()
        row = {
            "run_id": self.run_id,
            "name": name,
            "fingerprint": digest,
            "context": context,
            "num_rows": len(frame),
            "schema": schema,
        }
        self._store.log_dataset(row)
        return digest

    def log_feature_lineage(self, lineage: Mapping[str, Any]) -> None:
        """Record the feature lineage of a training set this run used
        (``ws.features.lineage``'s dict; ``get_historical(..., run=run)`` calls this).

        Kept in tags, one transaction: ``features.lineage`` holds every service's lineage
        logged in this run (JSON, a list by service; logging a service again replaces its
        entry), and ``features.service`` / ``features.service_version`` name the last one,
        for ``runs list --filter``. Registering a model from the run copies the lineage into
        the version (``lineage["features"]``), where later changes cannot reach it.
        """
        self._require_running()
        if not isinstance(lineage, Mapping) or not isinstance(lineage.get("views"), list):
            raise InvalidInputError(
                "a feature lineage is a dict with 'service', 'version' and 'views'; "
                "take it from ws.features.lineage(SERVICE)"
            )
        entry = json.loads(json.dumps(dict(lineage), default=str))  # plain JSON from now on
        key = entry.get("service") or ""
        self._feature_lineage[key] = entry
        tags: dict[str, Any] = {
            FEATURE_LINEAGE_TAG: [self._feature_lineage[k] for k in sorted(self._feature_lineage)]
        }
        if entry.get("service"):
            tags["features.service"] = entry["service"]
            # "" for a service object never applied (it has no version number)
            tags["features.service_version"] = entry.get("version") or ""
        self.set_tags(tags)

    def log_artifact(self, path: str | Path, name: str | None = None) -> str:
        """Store a file or a folder; return its digest."""
        self._require_running()
        source = Path(path)
        if source.is_dir():
            digest, size = put_tree(self._artifacts, source)
            kind = "tree"
        elif source.is_file():
            digest, size, kind = self._artifacts.put_file(source), source.stat().st_size, "file"
        else:
            raise InvalidInputError(f"artifact path {str(source)!r} does not exist")
        self.record_artifact(name or source.name, digest, size, kind)
        return digest

    def log_text(self, text: str, name: str) -> str:
        data = text.encode("utf-8")
        return self._log_bytes(data, name)

    def log_dict(self, obj: Mapping[str, Any], name: str) -> str:
        data = json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8")
        return self._log_bytes(data, name)

    def _log_bytes(self, data: bytes, name: str) -> str:
        self._require_running()
        digest = self._artifacts.put(data)
        self.record_artifact(name, digest, len(data), "file")
        return digest

    def record_artifact(self, path: str, digest: str, size: int, kind: str) -> None:
        """Attach an already stored artifact to this run under ``path``."""
        _check_key(path, "artifact path")
        row = {"run_id": self.run_id, "path": path, "digest": digest, "size": size, "kind": kind}
        self._store.record_artifact(row)

    def _require_running(self) -> None:
        if self.status != "running":
            raise ConflictError(
                f"run {self.run_id} is {self.status}; log inside 'with ws.start_run(...)'"
            )


def _check_key(key: str, what: str) -> None:
    if not isinstance(key, str) or not key or len(key) > 250:
        raise InvalidInputError(f"{what} name {key!r} must be a non-empty string of <= 250 chars")


def _stringify(values: Mapping[str, Any], what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        _check_key(key, what)
        out[key] = value if isinstance(value, str) else json.dumps(value, default=str)
    return out
