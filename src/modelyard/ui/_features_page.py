"""The dashboard's features page: entities (join keys), feature views (entity, typed
features, source, ttl, owner, tags, checks), feature services (the views they read,
and those views' owners), how fresh each online copy is, and what backfill checked.

Read through what ``modelyard features list|show`` call (``ws.features.list``,
``entity``, ``view``, ``service``, ``watermarks``); a source's URL is redacted as
``features show`` redacts it. ``?q=`` matches part of a name, whatever its kind.

Backfill quality (``FeatureStore.backfill_status``): the time ranges whose partitions
passed every check the view declares, and the last run's partitions with their status
and, for the one that failed, the check and its message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from modelyard._redact import redact
from modelyard.errors import ModelyardError
from modelyard.ui._errors import page_of
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.features import FeatureStore, FeatureView
    from modelyard.workspace import Workspace


def features_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/features")
    def features(q: str = "") -> Response:
        try:
            store = ws.features
            found = [d for d in store.list() if q.lower() in d[1].lower()]
        except ModelyardError as exc:  # DuckDB is not installed, or the database is down
            return page_of(exc)
        kinds: dict[str, list[dict[str, Any]]] = {"entity": [], "view": [], "service": []}
        for kind, name, version in sorted(found):
            try:
                row = _ROWS[kind](store, name)
            except ModelyardError as exc:  # a definition this version cannot read: say so
                row = {"error": exc.message}
            kinds.setdefault(kind, []).append(
                {"name": name, "version": version, "error": None, **row}
            )
        html = render(
            "features.html",
            title="Features",
            q=q,
            entities=kinds["entity"],
            views=kinds["view"],
            services=kinds["service"],
            found=len(found),
        )
        return HTMLResponse(html)

    return router


def _entity(store: FeatureStore, name: str) -> dict[str, Any]:
    entity = store.entity(name)
    return {"join_keys": entity.join_keys, "description": entity.description}


def _view(store: FeatureStore, name: str) -> dict[str, Any]:
    view = store.view(name)
    spec = view.source.spec()
    return {
        "view": view,
        "source": [
            (k, redact(", ".join(map(str, v)) if isinstance(v, list) else str(v)))
            for k, v in spec.items()
            if v not in (None, "", [])
        ],
        "checks": [_check_text(c) for c in view.checks],
        "fresh": _fresh(store, view),
        "backfill": store.backfill_status(name),
    }


def _service(store: FeatureStore, name: str) -> dict[str, Any]:
    service = store.service(name)
    views: dict[str, list[str]] = {}
    for ref in service.refs:
        views.setdefault(ref.view, []).append(ref.feature)
    owners: dict[str, str] = {}
    for view in views:
        try:
            owners[view] = store.view(view).owner
        except ModelyardError:
            owners[view] = ""
    return {
        "description": service.description,
        "views": sorted(views.items()),
        "owners": sorted({o for o in owners.values() if o}),
        "fresh": _fresh(store, None, name),
    }


_ROWS = {"entity": _entity, "view": _view, "service": _service}


def _fresh(store: FeatureStore, view: FeatureView | None, name: str = "") -> dict[str, Any]:
    """Each online view's watermark (None: never materialized), or why it is unknown."""
    if view is not None and not view.online:
        return {}
    target = view.name if view is not None else name
    try:
        return store.watermarks(target)
    except ModelyardError as exc:  # the online store is down: say so, go on
        return {target: exc.message}


def _check_text(check: Any) -> str:
    """A declared check as its kind and settings: ``range(feature=trips, min=0, max=None)``."""
    from modelyard.features import check_spec

    spec = check_spec(check)
    kind = spec.pop("kind")
    return f"{kind}({', '.join(f'{k}={v}' for k, v in spec.items())})"
