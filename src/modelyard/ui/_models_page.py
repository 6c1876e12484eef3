"""The dashboard's models pages: the registered models, and one model's versions in
full (metrics, signature, resource use, lineage), alias history and release records.

Read through what ``modelyard models list|show`` and ``release history`` call
(``ws.registry``, ``release_history``), the run through ``ws.runs.get`` as ``runs show``
does, and the feature service through ``ws.features`` as ``features show`` does. The
lineage chain is what is recorded, nothing guessed: version -> the run it was logged in
-> the data sets that run logged (fingerprints kept with the version at registration)
-> the feature service the version is bound to (``register(features=...)``, what the
server reads online) -> the views that service selects. Resource use is what tracking
records: the model artifact's size, the run's duration and environment. Load time and
memory are measured by a serving process only (its /metrics), never stored, so they are
not shown here.

After an action (``_actions.py``) the page is shown with ``?done=CODE`` (``alias``,
``rollback``, ``stop-canary``; ``&alias=ALIAS`` for the first two): the notice is written
here from what the registry holds now, never taken from the address, so a link cannot
make the page say anything else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from modelyard.errors import ModelyardError
from modelyard.ui._errors import page_of
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.registry import ModelVersion, TrafficSplit
    from modelyard.workspace import Workspace

DETAILED = 10  # versions shown in full, newest first: each reads its run
ENV_KEYS = ("python", "implementation", "platform", "machine")  # as ``runs show`` lists


def model_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/models")
    def models() -> Response:
        listed = ws.registry.list()
        return HTMLResponse(render("models.html", title="Models", models=listed))

    @router.get("/models/{name}")
    def model_page(name: str, done: str = "", alias: str = "production") -> Response:
        try:
            versions = sorted(ws.registry.versions(name), key=lambda v: -v.version)
            history = {
                alias: ws.registry.alias_history(name, alias)
                for alias in sorted({a for v in versions for a in v.aliases})
            }
        except ModelyardError as exc:
            return page_of(exc)  # 404 for an unknown model, 503 for a database that is down
        from modelyard.registry import get_traffic
        from modelyard.release import release_history

        records = release_history(ws.metadata, name, limit=50)
        split = get_traffic(ws.registry, name)
        return HTMLResponse(
            render(
                "model.html",
                title=f"Model {name}",
                name=name,
                versions=versions,
                details=[_details(ws, v) for v in versions[:DETAILED]],
                more=max(0, len(versions) - DETAILED),
                history=history,
                records=[(r, _gate_rows(r.details)) for r in records],
                split=split,
                rollbacks={a: ws.registry.rollback_target(name, a) for a in history},
                done=notice(name, done, alias, versions, split),
            )
        )

    return router


def notice(
    name: str, done: str, alias: str, versions: list[ModelVersion], split: TrafficSplit | None
) -> str:
    """What the action ``done`` left, as the registry holds it now ("" for no action, an
    unknown one, or a state the action did not leave: the page never repeats the address)."""
    if done in ("alias", "rollback"):
        now = next((v.version for v in versions if alias in v.aliases), None)
        return "" if now is None else f"{name}@{alias} now points at version {now}"
    if done == "stop-canary" and split is None:
        return f"the canary of {name} is stopped; all traffic goes to the champion"
    return ""


def _details(ws: Workspace, v: ModelVersion) -> dict[str, Any]:
    """One version's metrics, signature, resource use and lineage chain, as rows."""
    run = None
    run_error = None
    if v.run_id:
        try:
            run = ws.runs.get(v.run_id)
        except ModelyardError as exc:  # the run was deleted after registering: say so
            run_error = exc.message
    artifact = next((a for a in (run.artifacts if run else []) if a["digest"] == v.artifact), None)
    resources: list[tuple[str, Any]] = [
        ("model artifact", v.artifact),
        ("artifact size", _size(artifact["size"]) if artifact and artifact["size"] else None),
        ("training run duration", f"{run.duration_s:.1f} s" if run and run.duration_s else None),
    ]
    env = run.environment if run else {}
    resources += [(key, env.get(key)) for key in ENV_KEYS]
    packages = env.get("packages")
    if isinstance(packages, dict):
        resources += [(f"package {k}", x) for k, x in sorted(packages.items())]
    return {
        "version": v,
        "run": run,
        "run_error": run_error,
        "resources": [(k, x) for k, x in resources if x not in (None, "")],
        "service": _service(ws, v),
    }


def _service(ws: Workspace, v: ModelVersion) -> dict[str, Any] | None:
    """The feature service the version is bound to, with the views it reads, or None."""
    if v.features is None:
        return None
    name = v.features.service
    try:
        service = ws.features.service(name)
    except ModelyardError as exc:  # not applied here, or DuckDB missing: say which
        return {"name": name, "views": [], "error": exc.message}
    views: dict[str, list[str]] = {}
    for ref in service.refs:
        views.setdefault(ref.view, []).append(ref.feature)
    return {"name": name, "views": sorted(views.items()), "error": None}


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit} ({size} B)"
        value /= 1024
    return f"{size} B"  # pragma: no cover - the loop always returns


def _gate_rows(details: Any) -> list[dict[str, Any]]:
    """The gate results a release record holds (``release check``, ``promote``), as rows."""
    gates = details.get("gates") if isinstance(details, dict) else None
    return [g for g in gates or [] if isinstance(g, dict)]
