"""The dashboard's operations pages: jobs (``_jobs_page.py``: schedules, runs, SLA
misses, a run's log followed as it grows), features (``_features_page.py``:
definitions, freshness, backfill checks), recommendations and A/B tests
(``_ab_page.py``). ``ops_routes`` is the one router the app includes for them, so that
pages can move between modules without touching ``_app.py``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter

from modelyard.ui._ab_page import ab_routes
from modelyard.ui._features_page import features_routes
from modelyard.ui._jobs_page import jobs_routes
from modelyard.ui._recommendations_page import recommendations_routes

if TYPE_CHECKING:
    from modelyard.workspace import Workspace


def ops_routes(ws: Workspace) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)
    router.include_router(jobs_routes(ws))
    router.include_router(features_routes(ws))
    router.include_router(recommendations_routes(ws))
    router.include_router(ab_routes(ws))
    return router
