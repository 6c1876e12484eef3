"""The ``modelyard`` command line (Typer + rich).

Every ``ModelyardError`` becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli import (
    ab_report,
    alerts,
    build,
    canary,
    features,
    imports,
    jobs,
    keys,
    models,
    monitor,
    recommendations,
    release,
    runs,
)
from modelyard.cli._common import (
    WorkspaceOpt,
    check_port_option,
    close_workspaces,
    console,
    err_console,
    open_workspace,
)
from modelyard.cli.lineage import lineage
from modelyard.cli.quickstart import quickstart
from modelyard.cli.score import score
from modelyard.config import SETTINGS
from modelyard.errors import ConfigError, ModelyardError

app = typer.Typer(
    name="modelyard",
    help="modelyard: from raw data to a monitored model service.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
config_app = typer.Typer(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(runs.app, name="runs")
app.add_typer(models.app, name="models")
app.add_typer(features.app, name="features")
app.add_typer(monitor.app, name="monitor")
app.add_typer(release.app, name="release")
release.app.command("canary")(canary.canary)
release.app.command("ab-report")(ab_report.ab_report_command)
app.add_typer(jobs.app, name="jobs")
app.add_typer(imports.app, name="import")
app.command("scheduler")(jobs.scheduler)
monitor.app.command("check")(alerts.check_command)
monitor.app.command("alerts")(alerts.alerts_command)
monitor.app.command("slo")(alerts.slo_command)
monitor.app.command("history")(alerts.history_command)
app.command("quickstart")(quickstart)
app.command("score")(score)
app.command("lineage")(lineage)
app.command("build")(build.build)
app.add_typer(keys.app, name="keys")
app.add_typer(recommendations.app, name="recommendations")
app.command("audit")(keys.audit)


@app.command()
def init(
    folder: Path = typer.Argument(Path("."), help="workspace folder"),
    blueprint: str = typer.Option(
        None, "--blueprint", help="start from a reference application, e.g. sentiment"
    ),
) -> None:
    """Create a workspace: a folder with a commented modelyard.toml (or a blueprint's files)."""
    from modelyard.workspace import Workspace

    if blueprint is not None:
        from modelyard.blueprints import write_template

        written, kept = write_template(blueprint, folder)
        with Workspace(folder, create=True) as ws:
            ws.metadata  # noqa: B018 - creates the database and applies migrations now
        names = ", ".join(p.name for p in written) or "nothing new"
        also = f" (kept existing {', '.join(p.name for p in kept)})" if kept else ""
        console.print(f"wrote {names} of the {blueprint} blueprint into {folder}{also}")
        cd = "" if folder.resolve() == Path.cwd() else f"cd {folder} && "
        console.print(f"next: {cd}modelyard quickstart --blueprint {blueprint}")
        return
    existed = (folder / "modelyard.toml").exists()
    ws = Workspace.init(folder)
    ws.metadata  # noqa: B018 - creates the database and applies migrations now
    verb = "kept existing" if existed else "wrote"
    where = ws.config.shown("metadata.url")
    console.print(f"{verb} {folder / 'modelyard.toml'}; metadata at {where}")


@config_app.command("show")
def config_show(workspace: str = WorkspaceOpt) -> None:
    """Each setting's effective value and where it came from."""
    cfg = open_workspace(workspace).config
    table = Table(title=f"configuration of {cfg.root}")
    for col in ("key", "value", "source", "env variable"):
        table.add_column(col, overflow="fold")
    for s in SETTINGS:
        table.add_row(s.key, escape(repr(cfg.shown(s.key))), escape(cfg.source(s.key)), s.env)
    console.print(table)


@app.command()
def serve(
    refs: list[str] = typer.Argument(None, help="models to serve: NAME@ALIAS or NAME/VERSION"),
    host: str = typer.Option(None, "--host", help="default: serve.host"),
    port: int = typer.Option(None, "--port", help="default: serve.port (1 to 65535)"),
    spec: Path = typer.Option(None, "--spec", help="TOML with a [models.NAME] table per model"),
    workers: int = typer.Option(1, "--workers", min=1, help="processes sharing the port"),
    grpc_port: int = typer.Option(
        None, "--grpc-port", help="also serve OIP v2 over gRPC on this port (1 to 65535)"
    ),
    max_batch_size: int = typer.Option(
        None, "--max-batch-size", min=1, help="rows per batch (default: timed per model)"
    ),
    max_latency_ms: float = typer.Option(0.0, "--max-latency-ms", min=0, help="batch wait"),
    timeout_ms: float = typer.Option(30_000, "--timeout-ms", help="per-request model timeout"),
    max_queue: int = typer.Option(
        2048, "--max-queue", min=1, help="requests held per model before 503 + Retry-After"
    ),
    inline: str = typer.Option(
        "auto", "--inline", help="call models on the event loop: auto (timed), always, never"
    ),
    threads: int = typer.Option(
        2, "--threads", min=1, max=256, help="threads of each variant of each model"
    ),
    cache: str = typer.Option("off", "--cache", help="prediction cache: off, local or redis"),
    cache_url: str = typer.Option(None, "--cache-url", help="redis://… for --cache redis"),
    poll_interval: float = typer.Option(1.0, "--poll-interval", help="alias check, seconds"),
    max_body_bytes: int = typer.Option(10 * 1024 * 1024, "--max-body-bytes", min=1),
    max_batch_rows: int = typer.Option(
        10_000, "--max-batch-rows", help="rows one prediction request may hold, else 413"
    ),
    max_string_length: int = typer.Option(
        65_536, "--max-string-length", help="characters one string value may hold, else 422"
    ),
    ssl_certfile: Path = typer.Option(
        None, "--ssl-certfile", help="serve HTTPS (and gRPC over TLS) with this PEM certificate"
    ),
    ssl_keyfile: Path = typer.Option(
        None, "--ssl-keyfile", help="the certificate's private key (PEM, unencrypted)"
    ),
    log_predictions: bool = typer.Option(
        True, "--log-predictions/--no-log-predictions", help="keep every answered prediction"
    ),
    header_timeout: float = typer.Option(
        10.0,
        "--header-timeout",
        help="seconds a connection may take to send its request headers before it is closed",
    ),
    body_timeout: float = typer.Option(
        30.0, "--body-timeout", help="seconds a request body may take to arrive, else 408"
    ),
    max_connections: int = typer.Option(
        1024,
        "--max-connections",
        help="open connections per worker process; beyond it a connection is answered 503",
    ),
    require_safe_formats: bool = typer.Option(
        False,
        "--require-safe-formats",
        help="refuse models stored as pickles (sklearn joblib, python, torch): loading runs code",
    ),
    require_auth: bool = typer.Option(
        False, "--require-auth", help="require API keys on a loopback address too"
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth",
        help="serve a non-loopback address without API keys (warned at every start)",
    ),
    dashboard: bool = typer.Option(
        True, "--ui/--no-ui", help="also serve the dashboard at /ui (sign-in with a key)"
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Serve models: /v1/models/NAME/predict, OIP v2 (/v2/…, gRPC), /metrics, /readyz, /docs,
    and the dashboard at /ui.

    The server follows each alias and hot-swaps when it moves; batching, cache and
    timeout flags apply to every model, --spec sets them (and canary, A/B, shadow)
    per model. On any address but loopback every route except the health checks needs
    an API key (modelyard keys create).
    """
    from modelyard.serving import ServeOptions, load_spec, parse_options
    from modelyard.serving import serve as run_server
    from modelyard.workspace import Workspace

    check_port_option("--port", port)
    check_port_option("--grpc-port", grpc_port)
    if require_auth and insecure_no_auth:
        raise ConfigError("--require-auth and --insecure-no-auth contradict; pass one of them")
    defaults = {
        "max_batch_size": max_batch_size,
        "max_latency_ms": max_latency_ms,
        "timeout_ms": timeout_ms,
        "max_queue": max_queue,
        "inline": inline,
        "cache": cache,
        "cache_url": cache_url,
    }
    models: list[ServeOptions] = []
    if spec is not None:
        models += load_spec(spec, defaults)
    models += [parse_options({**defaults, "ref": r}, f"model {r}") for r in refs or []]
    if not models:
        raise ConfigError("name at least one model (NAME@ALIAS) or pass --spec serve.toml")
    ws = Workspace(workspace, serve_host=host, serve_port=port)
    run_server(
        ws,
        models,
        host=ws.config["serve.host"],
        port=ws.config["serve.port"],
        log_level=ws.config["serve.log_level"],
        workers=workers,
        grpc_port=grpc_port,
        poll_interval_s=poll_interval,
        max_body_bytes=max_body_bytes,
        threads=threads,
        log_predictions=log_predictions,
        header_timeout_s=header_timeout,
        body_timeout_s=body_timeout,
        max_connections=max_connections,
        auth=True if require_auth else (False if insecure_no_auth else None),
        max_batch_rows=max_batch_rows,
        max_string_length=max_string_length,
        ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
        ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
        require_safe_formats=require_safe_formats,
        extensions=("modelyard.ui:mount_on_server",) if dashboard else (),
    )


@app.command()
def ui(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on (loopback)"),
    port: int = typer.Option(8100, "--port", help="port to listen on (1 to 65535)"),
    workspace: str = WorkspaceOpt,
) -> None:
    """The dashboard of a workspace, read-only, at http://HOST:PORT/ui."""
    from modelyard.serving import check_port, is_loopback

    check_port_option("--port", port)
    if not is_loopback(host):
        raise ConfigError(
            f"--host {host}: 'modelyard ui' has no sign-in, so it listens on loopback only; "
            "for a shared dashboard use /ui on 'modelyard serve', which signs in with API keys"
        )
    ws = open_workspace(workspace)
    ws.metadata.open()  # the dashboard reads the database: refuse a team server's URL now
    check_port(host, port)
    import uvicorn

    from modelyard.ui import create_ui_app

    shown = f"[{host}]" if ":" in host else host  # an IPv6 address in a URL
    console.print(
        escape(f"dashboard of {ws.config.root} at http://{shown}:{port}/ui (Ctrl+C stops)")
    )
    uvicorn.run(create_ui_app(ws), host=host, port=port, log_level="warning")


@app.command("server")
def team_server(
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    port: int = typer.Option(5000, "--port", help="port to listen on (1 to 65535)"),
    workers: int = typer.Option(1, "--workers", help="worker processes (1 or more)"),
    require_auth: bool = typer.Option(
        False, "--require-auth", help="require API keys on a loopback address too"
    ),
    insecure_no_auth: bool = typer.Option(
        False,
        "--insecure-no-auth",
        help="serve a non-loopback address without API keys (warned at every start)",
    ),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="serve HTTPS with this PEM"),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="the certificate's key (PEM)"),
    workspace: str = WorkspaceOpt,
) -> None:
    """The team server: tracking, registry and artifacts over HTTP, MLflow's REST API
    included (MLFLOW_TRACKING_URI=http://HOST:PORT; MLFLOW_TRACKING_TOKEN=KEY).

    On any address but loopback every call needs an API key: reader reads, trainer logs
    runs and registers versions, admin also moves aliases (modelyard keys create).
    """
    from modelyard.serving import check_port, is_loopback

    check_port_option("--port", port)
    if workers < 1:
        raise ConfigError(f"--workers {workers}: run at least 1 worker process")
    if require_auth and insecure_no_auth:
        raise ConfigError("--require-auth and --insecure-no-auth contradict; pass one of them")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise ConfigError("pass --ssl-certfile and --ssl-keyfile together, or neither")
    auth = require_auth or not (insecure_no_auth or is_loopback(host))
    ws = open_workspace(workspace)
    ws.metadata.open()  # a database that is down or a wrong URL: one line, before the banner
    check_port(host, port)
    from modelyard.server import run_server

    shown = f"[{host}]" if ":" in host else host
    scheme = "https" if ssl_certfile else "http"
    keys = "API keys required" if auth else "no API keys (loopback)"
    if insecure_no_auth and not is_loopback(host):
        err_console.print("[bold yellow]warning:[/] serving without API keys on a network address")
    console.print(
        escape(
            f"team server of {ws.config.root} at {scheme}://{shown}:{port} ({keys}); "
            f"MLFLOW_TRACKING_URI={scheme}://{shown}:{port} (Ctrl+C stops)"
        )
    )
    run_server(
        ws,
        host=host,
        port=port,
        workers=workers,
        auth=auth,
        ssl_certfile=None if ssl_certfile is None else str(ssl_certfile),
        ssl_keyfile=None if ssl_keyfile is None else str(ssl_keyfile),
    )


def main(argv: list[str] | None = None) -> None:
    """Run the command line (``argv`` defaults to ``sys.argv[1:]``)."""
    from modelyard._redact import redact
    from modelyard.security import acting_as, command_line_actor

    try:
        with acting_as(command_line_actor()):  # the audit log's "who" for admin commands
            app(args=argv, prog_name="modelyard")
    except ModelyardError as exc:
        # Redacted: a value read from a secret reference may be quoted in a message.
        err_console.print(f"[bold red]error:[/] {escape(redact(exc.message))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        close_workspaces()
