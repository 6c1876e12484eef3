"""The dashboard's lineage page: ``/ui/lineage?ref=REQUEST_ID_OR_MODEL_REF``.

The chain ``modelyard lineage`` prints, built by the same function
(``monitoring.lineage_of``): prediction -> model version -> run -> the feature service its
training set was built from -> the views it read -> each view's source, with the
fingerprint of its data when the training set was built. Each hop links to its own page
where the dashboard has one (the model's version, the run, the service and views on the
features page). Without ``ref`` the page is the search box alone; an unknown id or model
shows the one-line reason under it (404), so the person can correct what they typed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response

from modelyard.errors import ModelyardError
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


def lineage_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/lineage")
    def lineage(ref: str = "") -> Response:
        from modelyard.monitoring import lineage_of

        ref = ref.strip()
        if not ref:
            return HTMLResponse(
                render("lineage.html", title="Lineage", ref="", chain=None, error=None)
            )
        try:
            chain = lineage_of(ws, ref)
        except ModelyardError as exc:
            if exc.status >= 500:
                raise  # not what was typed: the error page says what is down
            page = render("lineage.html", title="Lineage", ref=ref, chain=None, error=exc.message)
            return HTMLResponse(page, exc.status)
        page = render("lineage.html", title=f"Lineage of {ref}", ref=ref, chain=chain, error=None)
        return HTMLResponse(page)

    return router
