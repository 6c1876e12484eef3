"""``ws.features``: the feature store's entry point.

Building a ``FeatureStore`` imports nothing heavy: DuckDB (the ``features`` extra) and the
modules that use it load on the first call that needs them, so a server that serves a
model without online features never loads them.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from modelyard import _time
from modelyard.errors import BackendUnavailableError, InvalidInputError

if TYPE_CHECKING:
    from modelyard.backends.executors import Executor
    from modelyard.backends.metadata import MetadataStore
    from modelyard.backends.online import OnlineStore
    from modelyard.contracts import Field
    from modelyard.features._backfill import BackfillReport, PartitionResult
    from modelyard.features._definitions import Entity, FeatureService, FeatureView
    from modelyard.features._historical import Output
    from modelyard.features._online import MaterializeResult, OnlineFeatures
    from modelyard.features._registry import Change, Definition, Definitions


def require_duckdb() -> None:
    """Fail with the remedy, in one line, where the ``features`` extra is not installed."""
    try:
        import duckdb  # noqa: F401
    except ModuleNotFoundError:
        raise BackendUnavailableError(
            "the feature store needs DuckDB, which is not installed; "
            "pip install 'modelyard[features]'"
        ) from None


class FeatureStore:
    """Definitions (plan, apply, look up) and point-in-time correct training sets."""

    def __init__(
        self,
        metadata: MetadataStore,
        offline_root: Path,
        online: Callable[[], OnlineStore] | None = None,
        executor: Callable[[], Executor] | None = None,
    ) -> None:
        self.offline_root = offline_root
        self._metadata = metadata
        self._online_factory = online
        self._executor_factory = executor
        self._online: OnlineStore | None = None
        self._definitions: Definitions | None = None

    @property
    def definitions(self) -> Definitions:
        if self._definitions is None:
            require_duckdb()
            from modelyard.features._registry import Definitions

            self._definitions = Definitions(self._metadata, self.offline_root)
        return self._definitions

    @property
    def online(self) -> OnlineStore:
        if self._online is None:
            if self._online_factory is None:
                raise InvalidInputError("this feature store has no online store configured")
            self._online = self._online_factory()
        return self._online

    def plan(self, objects: Sequence[Definition]) -> builtins.list[Change]:
        return self.definitions.plan(objects)

    def apply(self, objects: Sequence[Definition]) -> builtins.list[Change]:
        return self.definitions.apply(objects)

    def entity(self, name: str, version: int | None = None) -> Entity:
        return self.definitions.entity(name, version)

    def view(self, name: str, version: int | None = None) -> FeatureView:
        return self.definitions.view(name, version)

    def service(self, name: str, version: int | None = None) -> FeatureService:
        return self.definitions.service(name, version)

    def list(self) -> builtins.list[tuple[str, str, int]]:
        return self.definitions.list()

    def get_historical(
        self,
        entity_rows: Any,
        features: FeatureService | str | Sequence[str],
        *,
        timestamp_field: str = "event_timestamp",
        assume_utc: bool = False,
        full_feature_names: bool = False,
        output: Output = "pandas",
        path: str | Path | None = None,
        run: Any = None,
    ) -> Any:
        """Per entity row, each feature's latest value at or before the row's time (in ttl).

        ``features``: a FeatureService, a service name, or ``["view:feature", ...]``.
        Returns pandas (default), Arrow or polars; with ``path`` writes Parquet there.
        ``run`` (a tracking Run): records on it the feature lineage (``lineage``, taken
        before the join) and the training set's fingerprint as data set
        ``training_set:SERVICE``, so the model registered from the run keeps both.
        """
        require_duckdb()
        from modelyard.features._historical import get_historical

        recorded = None
        if run is not None:
            from modelyard.features import _lineage

            recorded = _lineage.training_lineage(self.definitions, features, run)
        result = get_historical(
            self.definitions,
            entity_rows,
            features,
            timestamp_field=timestamp_field,
            assume_utc=assume_utc,
            full_feature_names=full_feature_names,
            output=output,
            path=path,
            temp_directory=self.offline_root / ".tmp",
        )
        if recorded is not None:
            from modelyard.features import _lineage

            _lineage.record_training_set(run, recorded, result)
        return result

    def lineage(
        self, service: str, version: int | None = None, *, fingerprint: bool = True
    ) -> dict[str, Any]:
        """Feature service ``service`` (latest version by default), the version of each view
        it reads, each view's source (passwords hidden) and a ``sha256`` of the files a read
        takes now: source, pushed and backfilled files (``fingerprint=False`` skips reading
        them). A PostgreSQL source has ``fingerprint`` None and a ``fingerprint_note``."""
        require_duckdb()
        from modelyard.features._lineage import service_lineage

        return service_lineage(self.definitions, service, version, fingerprint=fingerprint)

    # -- online ------------------------------------------------------------------------
    def materialize(
        self,
        start: datetime,
        end: datetime,
        *,
        views: Sequence[str] | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> builtins.list[MaterializeResult]:
        """Write each online view's latest in-ttl value per key, for event times in
        (start, end], to the online store; then move the view's watermark to ``end``."""
        require_duckdb()
        start = _time.aware(start, "start")
        end = _time.aware(end, "end")
        if start >= end:
            raise InvalidInputError(f"start {start} must be before end {end}")
        return [self._materialize_one(v, n, start, end, progress) for v, n in self._views(views)]

    def materialize_incremental(
        self,
        end: datetime,
        *,
        views: Sequence[str] | None = None,
        progress: Callable[[str, int], None] | None = None,
    ) -> builtins.list[MaterializeResult]:
        """Materialize each view from its watermark (or its ttl before ``end``) to ``end``.

        Watermarks are kept in the online store itself: after ``online.url`` changes (or
        the store is emptied) the first run writes every row in range, with ``first``
        set on its result."""
        require_duckdb()
        from modelyard.features import _online
        from modelyard.features._online import MaterializeResult

        end = _time.aware(end, "end")
        results = []
        for view, version in self._views(views):
            start = _online.watermark(self.online, view.name, version)
            first = start is None
            if start is None:  # this store never held the view: everything in range
                start = end - view.ttl if view.ttl is not None else datetime(1970, 1, 1, tzinfo=UTC)
            if start >= end:
                results.append(MaterializeResult(view.name, version, 0, start, end, first))
                continue
            result = self._materialize_one(view, version, start, end, progress)
            result.first = first
            results.append(result)
        return results

    def watermarks(self, name: str) -> dict[str, datetime | None]:
        """How far each online view is materialized in the configured online store: view
        ``name``'s watermark, or (for a feature service) the watermark of every view it
        reads; None if never materialized into this store."""
        from modelyard.features import _online

        kinds = {n: k for k, n, _ in self.definitions.list()}
        if kinds.get(name) == "service":
            names = sorted({ref.partition(":")[0] for ref in self.service(name).features})
        else:
            names = [name]
        return {
            view.name: _online.watermark(self.online, view.name, version)
            for view, version in self._views(names)
        }

    def _views(self, views: Sequence[str] | None) -> builtins.list[tuple[FeatureView, int]]:
        from modelyard.features import _online

        return _online.online_views(self.definitions, views)

    def _materialize_one(
        self,
        view: FeatureView,
        version: int,
        start: datetime,
        end: datetime,
        progress: Callable[[str, int], None] | None,
    ) -> MaterializeResult:
        from modelyard.features import _online
        from modelyard.features._online import MaterializeResult

        step = None if progress is None else (lambda n: progress(view.name, n))
        rows = _online.materialize_view(
            view, version, self.online, start, end, step, offline_root=self.offline_root
        )
        _online.set_watermark(self.online, view.name, version, end)
        return MaterializeResult(view.name, version, rows, start, end)

    def push(
        self, view: str, rows: Any, *, to: Literal["both", "online", "offline"] = "both"
    ) -> int:
        """Validate ``rows`` against the view, append them offline and write them online.

        Pushed rows are seen by later ``get_historical`` and ``get_online`` calls. Every row
        is checked before anything is written: its columns and types, the declared ranges,
        categories and lengths of its fields, and the view's ``Range``, ``NullRate(max=0)``
        and ``UniqueKeys`` checks (``RowCount``, ``Freshness`` and a ``NullRate`` above 0
        judge whole partitions: backfill runs them). One bad row rejects the whole push.
        Returns the number of rows pushed.
        """
        require_duckdb()
        from modelyard.features import _online, _push

        found, version = self.definitions.versioned_view(view)
        table = _push.prepare_rows(found, rows)
        # Online first: a store that is down fails the push before anything is written (the
        # offline file is a local write, the least likely to fail after it).
        online = to in ("both", "online") and found.online
        if online:
            _online.write_table(self.online, found, version, table)
        if to in ("both", "offline"):
            try:
                _push.write_pushed(self.offline_root, found.name, table)
            except OSError as exc:
                if not online:
                    raise
                raise BackendUnavailableError(
                    f"push to '{found.name}': the rows are online but could not be written "
                    f"offline ({exc}); push them again with to='offline'"
                ) from None
        return int(table.num_rows)

    def backfill(
        self,
        view: str,
        start: datetime,
        end: datetime,
        *,
        partition: timedelta = timedelta(days=1),
        progress: Callable[[PartitionResult], None] | None = None,
    ) -> BackfillReport:
        """Recompute ``view`` from its source for [start, end) in checked partitions, computed
        on the workspace's executor; the first failing partition writes nothing and stops the
        run (see ``report.failed``); running it again resumes after the last good partition."""
        require_duckdb()
        from modelyard.backends.executors import open_executor
        from modelyard.features._backfill import backfill_view

        found, version = self.definitions.versioned_view(view)
        if self._executor_factory is not None:
            executor, own = self._executor_factory(), None
        else:  # a store built without a workspace: worker processes for this call only
            executor = own = open_executor("local")
        try:
            return backfill_view(
                found,
                version,
                self.offline_root,
                start,
                end,
                executor=executor,
                partition=partition,
                progress=progress,
            )
        finally:
            if own is not None:
                own.close()

    def backfill_status(self, view: str) -> dict[str, Any]:
        """The current version of ``view``'s backfill results: ``covered`` (time ranges
        whose partitions passed every check) and ``last_run`` (per partition: status,
        rows, the failing check and its message; None if never backfilled)."""
        from modelyard.features._backfill import backfill_folder, backfill_status

        found, version = self.definitions.versioned_view(view)
        return backfill_status(backfill_folder(self.offline_root, found.name, version))

    def online_reader(
        self,
        features: FeatureService | str | Sequence[str],
        *,
        full_feature_names: bool = False,
    ) -> OnlineReader:
        """Resolve ``features`` once; the reader's ``read(entity_rows)`` is the hot path."""
        from modelyard.features._historical import resolve

        selections = resolve(self.definitions, features)
        versions = {
            s.view.name: self.definitions.versioned_view(s.view.name)[1] for s in selections
        }
        return OnlineReader(self.online, selections, versions, full_feature_names)

    def get_online(
        self,
        features: FeatureService | str | Sequence[str],
        entity_rows: Any,
        *,
        at: datetime | None = None,
        full_feature_names: bool = False,
    ) -> OnlineFeatures:
        """The service's features for a batch of keys, from the online store.

        ``entity_rows``: a dict of key columns, a list of key dicts, or a DataFrame.
        Each value comes with its event time and a status (present, missing, expired).
        To read the same features often, keep ``online_reader(features)`` instead.
        """
        reader = self.online_reader(features, full_feature_names=full_feature_names)
        return reader.read(entity_rows, at=at)


class OnlineReader:
    """Features resolved once (views, versions, positions), read many times."""

    def __init__(
        self,
        store: OnlineStore,
        selections: builtins.list[Any],
        versions: dict[str, int],
        full_feature_names: bool,
    ) -> None:
        self._store = store
        self._selections = selections
        self._versions = versions
        self._full = full_feature_names

    @property
    def key_fields(self) -> builtins.list[Field]:
        """The entity join keys a read needs, each once, in view order."""
        seen: dict[str, Field] = {}
        for sel in self._selections:
            for key in sel.view.entity.join_keys:
                seen.setdefault(key.name, key)
        return builtins.list(seen.values())

    @property
    def feature_names(self) -> builtins.list[str]:
        """The names ``read`` returns the features under."""
        return [
            f"{sel.view.name}__{f}" if self._full else f
            for sel in self._selections
            for f in sel.features
        ]

    def read(self, entity_rows: Any, *, at: datetime | None = None) -> OnlineFeatures:
        from modelyard.features import _online

        when = datetime.now(UTC) if at is None else _time.aware(at, "at")
        return _online.read_online(
            self._store,
            self._selections,
            self._versions,
            entity_rows,
            at=when,
            full_feature_names=self._full,
        )
