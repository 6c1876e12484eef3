"""``modelyard features serve``: a server of online features only, without any model.

It is the server ``modelyard serve`` starts (the same auth, limits, logging, /healthz,
/readyz and /metrics), with the feature lookups ``GET|POST /v1/features/SERVICE`` and
no prediction route. Registered on the ``features`` sub-app at the end of
``cli/features.py``, whose callback has already checked that DuckDB is installed.
"""

from __future__ import annotations

import typer

from modelyard.cli._common import WorkspaceOpt, check_port_option
from modelyard.errors import ConfigError


def serve(
    host: str = typer.Option(None, "--host", help="default: serve.host"),
    port: int = typer.Option(None, "--port", help="default: serve.port (1 to 65535)"),
    workers: int = typer.Option(1, "--workers", min=1, help="processes sharing the port"),
    poll_interval: float = typer.Option(
        1.0, "--poll-interval", help="seconds between checks for new feature definitions"
    ),
    require_auth: bool = typer.Option(
        False, "--require-auth", help="require API keys on a loopback address too"
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth",
        help="serve a non-loopback address without API keys (warned at every start)",
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Serve online features: GET/POST /v1/features/SERVICE, /healthz, /readyz, /metrics.

    GET /v1/features/SERVICE?user_id=1&user_id=2

    POST /v1/features/SERVICE with {"entities": {"user_id": [1, 2]}}

    Each answer holds every feature's value, status and event time per entity, as
    'features get-online' reads them; a new 'features apply' is served within
    --poll-interval seconds.

    On any address but loopback every route except the health checks needs an API key
    with role predictor or admin (modelyard keys create).
    """
    from modelyard.serving import serve as run_server
    from modelyard.workspace import Workspace

    check_port_option("--port", port)
    if require_auth and insecure_no_auth:
        raise ConfigError("--require-auth and --insecure-no-auth contradict; pass one of them")
    if poll_interval < 0:
        raise ConfigError(f"--poll-interval {poll_interval}: expected 0 (never) or more seconds")
    ws = Workspace(workspace, serve_host=host, serve_port=port)
    run_server(
        ws,
        [],
        host=ws.config["serve.host"],
        port=ws.config["serve.port"],
        log_level=ws.config["serve.log_level"],
        workers=workers,
        poll_interval_s=poll_interval,
        log_predictions=False,
        auth=True if require_auth else (False if insecure_no_auth else None),
    )
