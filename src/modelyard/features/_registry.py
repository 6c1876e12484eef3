"""Stored feature definitions: plan and apply, versions, look-ups with nearest-name hints.

Each entity, view and service is kept as a JSON spec with a version number. Applying
a changed spec adds a version; older versions stay readable, so a model trained on
``trips`` version 1 can still be served from it after ``trips`` moves to version 2.
"""

from __future__ import annotations

import difflib
import hashlib
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb
import pyarrow.parquet as pq
from sqlalchemy import func, select

from modelyard import _time
from modelyard._files import atomic_write_bytes
from modelyard.backends.metadata import tables as t
from modelyard.errors import InvalidInputError, NotFoundError
from modelyard.features._definitions import Entity, FeatureService, FeatureView
from modelyard.features._sources import FileSource, FrameSource
from modelyard.features._typing import check_source_columns

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore

Definition = Entity | FeatureView | FeatureService
Kind = Literal["entity", "view", "service"]
_KIND_OF: dict[type, Kind] = {Entity: "entity", FeatureView: "view", FeatureService: "service"}
_FROM_SPEC = {
    "entity": Entity.from_spec,
    "view": FeatureView.from_spec,
    "service": FeatureService.from_spec,
}


@dataclass(frozen=True)
class Change:
    kind: Kind
    name: str
    action: Literal["create", "update", "unchanged"]
    version: int  # the version that holds the definition after apply
    changed: tuple[str, ...] = ()  # top-level spec keys that differ from the stored one

    def __str__(self) -> str:
        what = f" ({', '.join(self.changed)})" if self.changed else ""
        return f"{self.action:9} {self.kind:7} {self.name} -> version {self.version}{what}"


def _digest(spec: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()


class Definitions:
    """Versioned entities, views and services in the metadata store."""

    def __init__(self, metadata: MetadataStore, offline_root: Path) -> None:
        self._metadata = metadata
        self._offline = offline_root

    @property
    def offline_root(self) -> Path:
        return self._offline

    # -- plan and apply ------------------------------------------------------------------
    def plan(self, objects: Sequence[Definition]) -> list[Change]:
        """What ``apply`` would do, without writing anything."""
        return [change for change, _ in self._diff(self._prepare(objects, write=False))]

    def apply(self, objects: Sequence[Definition]) -> list[Change]:
        """Store new and changed definitions (one transaction); return what changed."""
        prepared = self._prepare(objects, write=True)
        diff = self._diff(prepared)
        now = _time.now_us()
        with self._metadata.write() as conn:
            for change, spec in diff:
                if change.action == "unchanged":
                    continue
                conn.execute(
                    t.feature_definitions.insert(),
                    {
                        "kind": change.kind,
                        "name": change.name,
                        "version": change.version,
                        "spec": spec,
                        "digest": _digest(spec),
                        "created_at": now,
                    },
                )
        return [change for change, _ in diff]

    def _prepare(
        self, objects: Sequence[Definition], *, write: bool
    ) -> list[tuple[Kind, Definition]]:
        """Check every object; store DataFrame sources as Parquet (only when writing)."""
        out: list[tuple[Kind, Definition]] = []
        names: set[tuple[Kind, str]] = set()
        views = {o.name: o for o in objects if isinstance(o, FeatureView)}
        for obj in objects:
            kind = _KIND_OF.get(type(obj))
            if kind is None:
                raise InvalidInputError(
                    f"cannot apply a {type(obj).__name__}; pass Entity, FeatureView or "
                    "FeatureService objects"
                )
            if (kind, obj.name) in names:
                raise InvalidInputError(f"{kind} '{obj.name}' is given twice in one apply")
            names.add((kind, obj.name))
            if isinstance(obj, FeatureView):
                obj = self._check_view(obj, write=write)
            elif isinstance(obj, FeatureService):
                for ref in obj.refs:
                    view = views.get(ref.view) or self.view(ref.view)
                    if ref.feature != "*":
                        view.feature(ref.feature)
            out.append((kind, obj))
        return out

    def _check_view(self, view: FeatureView, *, write: bool) -> FeatureView:
        source = view.source
        if isinstance(source, FrameSource):
            table = source.arrow()
            source = FileSource(
                str(self._store_frame(view.name, table, write=write)),
                source.timestamp_field,
                source.created_timestamp_field,
            )
            con = duckdb.connect()
            con.register("frame", table)
            describe = con.execute("DESCRIBE SELECT * FROM frame").fetchall()
        else:
            con = duckdb.connect()
            try:
                describe = con.execute(f"DESCRIBE {source.sql()}").fetchall()
            except duckdb.Error as exc:
                raise InvalidInputError(
                    f"feature view '{view.name}': cannot read its source: "
                    f"{str(exc).splitlines()[0]}"
                ) from None
        check_source_columns(view, {row[0]: row[1] for row in describe})
        if source is view.source:
            return view
        return FeatureView(
            view.name,
            entity=view.entity,
            source=source,
            features=view.features,
            ttl=view.ttl,
            online=view.online,
            owner=view.owner,
            description=view.description,
            tags=view.tags,
            checks=view.checks,
        )

    def _store_frame(self, view: str, table: Any, *, write: bool) -> Path:
        """Where a DataFrame source lives as Parquet (named by content); written if asked."""
        buffer = io.BytesIO()
        pq.write_table(table, buffer)
        data = buffer.getvalue()
        final = self._offline / "sources" / view / f"{hashlib.sha256(data).hexdigest()}.parquet"
        if write:
            final.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(final, data)
        return final

    def _diff(self, prepared: list[tuple[Kind, Definition]]) -> list[tuple[Change, Any]]:
        out: list[tuple[Change, Any]] = []
        with self._metadata.read() as conn:
            for kind, obj in prepared:
                spec = obj.spec()
                row = conn.execute(
                    select(t.feature_definitions.c.version, t.feature_definitions.c.spec)
                    .where(
                        t.feature_definitions.c.kind == kind,
                        t.feature_definitions.c.name == obj.name,
                    )
                    .order_by(t.feature_definitions.c.version.desc())
                    .limit(1)
                ).first()
                if row is None:
                    out.append((Change(kind, obj.name, "create", 1), spec))
                elif _digest(row.spec) == _digest(spec):
                    out.append((Change(kind, obj.name, "unchanged", row.version), spec))
                else:
                    changed = tuple(sorted(k for k in spec if spec.get(k) != row.spec.get(k)))
                    out.append((Change(kind, obj.name, "update", row.version + 1, changed), spec))
        return out

    # -- reading -------------------------------------------------------------------------
    def _get(self, kind: Kind, name: str, version: int | None) -> tuple[Any, int]:
        table = t.feature_definitions
        stmt = select(table.c.spec, table.c.version).where(
            table.c.kind == kind, table.c.name == name
        )
        if version is None:
            stmt = stmt.order_by(table.c.version.desc()).limit(1)
        else:
            stmt = stmt.where(table.c.version == version)
        with self._metadata.read() as conn:
            row = conn.execute(stmt).first()
            if row is None:
                names = [
                    r[0]
                    for r in conn.execute(
                        select(table.c.name).where(table.c.kind == kind).distinct()
                    )
                ]
        if row is None:
            if version is not None and name in names:
                raise NotFoundError(f"{kind} '{name}' has no version {version}")
            close = difflib.get_close_matches(name, names, n=1)
            hint = (
                f"did you mean '{close[0]}'?"
                if close
                else "define it and run ws.features.apply([...]) or 'modelyard features apply'"
            )
            raise NotFoundError(f"{kind} '{name}' is not registered; {hint}")
        return _FROM_SPEC[kind](row.spec), int(row.version)

    def entity(self, name: str, version: int | None = None) -> Entity:
        return self._get("entity", name, version)[0]  # type: ignore[no-any-return]

    def view(self, name: str, version: int | None = None) -> FeatureView:
        return self._get("view", name, version)[0]  # type: ignore[no-any-return]

    def versioned_view(self, name: str, version: int | None = None) -> tuple[FeatureView, int]:
        return self._get("view", name, version)

    def service(self, name: str, version: int | None = None) -> FeatureService:
        return self._get("service", name, version)[0]  # type: ignore[no-any-return]

    def list(self) -> list[tuple[str, str, int]]:
        """(kind, name, latest version) of every definition."""
        table = t.feature_definitions
        with self._metadata.read() as conn:
            rows = conn.execute(
                select(table.c.kind, table.c.name, func.max(table.c.version))
                .group_by(table.c.kind, table.c.name)
                .order_by(table.c.kind, table.c.name)
            ).all()
        return [(r[0], r[1], int(r[2])) for r in rows]
