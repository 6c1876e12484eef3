"""The team server (``modelyard server``): one shared endpoint for tracking, the registry
and artifacts, which the MLflow client speaks to unchanged.

Clients need a URL and an API key, not the database password or bucket credentials: the
server holds those. It speaks MLflow's REST API (experiments, runs, metrics, params,
tags, inputs, logged models, the proxied artifact API, registered models, versions and
aliases) over modelyard's own tables, so what an MLflow script logs is an ordinary
modelyard run or model version. Instances keep no state of their own: several behind a
load balancer share one database and artifact store.
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.server._app import create_server_app
    from modelyard.server._mlflow_import import ImportSummary, import_mlflow
    from modelyard.server._run import app_from_environment, run_server

__all__ = [
    "ImportSummary",
    "app_from_environment",
    "create_server_app",
    "import_mlflow",
    "run_server",
]

_EXPORTS = {
    "modelyard.server._app": ["create_server_app"],
    "modelyard.server._mlflow_import": ["ImportSummary", "import_mlflow"],
    "modelyard.server._run": ["app_from_environment", "run_server"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
