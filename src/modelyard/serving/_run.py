"""Start the server: check the port first, so a busy port is a one-line error.

``workers > 1`` runs that many processes on one port (see ``_workers.py``). Each
worker rebuilds the app from a spec in the environment, because a built app cannot
be handed to another process.

Every process serves HTTP with ``_protocol.py``'s protocol (a deadline on the client's
request headers, a cap on connections) and reads bodies with ``_http.py``'s deadline.
"""

from __future__ import annotations

import errno
import functools
import gc
import importlib
import ipaddress
import json
import logging
import math
import os
import resource
import socket
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError
from modelyard.serving import _logging
from modelyard.serving._fast import asgi_entry
from modelyard.serving._http import DEFAULT_BODY_TIMEOUT_S, set_body_timeout
from modelyard.serving._limits import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_STRING_LENGTH,
    check_request_limits,
)
from modelyard.serving._options import ServeOptions
from modelyard.serving._protocol import (
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    protocol_class,
)
from modelyard.serving._tls import check_tls
from modelyard.serving._workers import run_until_sigterm, supervise
from modelyard.serving.app import DEFAULT_MAX_BODY, create_app

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelyard.features import FeatureStore
    from modelyard.workspace import Workspace

# Deliberately outside the MODELYARD_* namespace, which the config loader owns.
_SPEC_ENV = "_MODELYARD_SERVE_SPEC"
# Open files a process needs besides its connections: listening sockets, the prediction
# log, models, libraries.
_OTHER_FILES = 256

logger = logging.getLogger("modelyard.serving")


def check_limits(header_timeout_s: float, body_timeout_s: float, max_connections: int) -> None:
    """One-line errors for limits that cannot work (a CLI typo must not start a server)."""
    for flag, seconds in (
        ("--header-timeout", header_timeout_s),
        ("--body-timeout", body_timeout_s),
    ):
        if not (math.isfinite(seconds) and seconds > 0):
            raise ConfigError(f"{flag} {seconds}: expected a positive number of seconds")
    if max_connections < 1:
        raise ConfigError(f"--max-connections {max_connections}: expected 1 or more")


def allow_open_files(max_connections: int) -> None:
    """Raise this process's open-file limit to fit ``max_connections`` (workers inherit it).

    Past the limit, accept() fails and the kernel queues new connections unanswered,
    where the cap would have answered them 503.
    """
    wanted = max_connections + _OTHER_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
        if raised < wanted:
            logger.warning(
                "the open-file limit is %d, too low for --max-connections %d; raise the hard "
                "limit (ulimit -Hn) or lower --max-connections",
                raised,
                max_connections,
            )


def check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(
                    f"port {port} on {host} is already in use; pass --port or set serve.port"
                ) from None
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def settle_heap() -> None:
    """Move everything loaded so far out of the garbage collector's reach.

    Models, libraries and the app are never freed while serving, but every full
    collection walks them: with scikit-learn and pandas loaded that is a pause of about
    100 ms every few thousand requests (p99 at c=32 went from 102 ms to 16 ms without it).
    """
    gc.collect()
    gc.freeze()


def serve(
    ws: Workspace,
    models: Sequence[str | ServeOptions],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
    workers: int = 1,
    grpc_port: int | None = None,
    poll_interval_s: float = 1.0,
    max_body_bytes: int = DEFAULT_MAX_BODY,
    threads: int = 2,
    log_predictions: bool = True,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    auth: bool | None = None,
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    require_safe_formats: bool = False,
    extensions: Sequence[str] = (),
) -> None:
    """Load ``models`` and serve them until SIGINT/SIGTERM (in-flight requests drain first).

    ``auth`` None requires API keys unless ``host`` is a loopback address; False turns
    them off (with a warning at every start), True requires them on any address.

    Every answered prediction goes to the workspace's prediction log
    (``ws.predictions``) unless ``log_predictions`` is False. Per process: a connection
    that has not sent its request headers within ``header_timeout_s`` is closed, a body
    not in within ``body_timeout_s`` is answered 408, and connections beyond
    ``max_connections`` are answered 503. A prediction with more than ``max_batch_rows``
    rows is answered 413, a string value longer than ``max_string_length`` characters 422.

    ``ssl_certfile`` and ``ssl_keyfile`` (PEM; both or neither) serve HTTPS, and gRPC
    over TLS; they are loaded before the server starts, so a bad pair is one line.
    ``require_safe_formats`` refuses models whose flavor unpickles a file (runs code).
    ``extensions`` name functions (``"package.module:function"``) called with the app and
    ``ws`` to add routes, in every worker: the command line mounts the dashboard so,
    which serving cannot import (it is a layer above).
    """
    import uvicorn

    check_limits(header_timeout_s, body_timeout_s, max_connections)
    check_request_limits(max_batch_rows, max_string_length)
    tls = check_tls(ssl_certfile, ssl_keyfile)
    _logging.configure(log_level)
    allow_open_files(max_connections)
    check_port(host, port)
    if grpc_port == port:  # both would bind it, and the second fails after start-up
        raise ConfigError(
            f"--grpc-port {grpc_port} is also the HTTP port (--port or serve.port); "
            "pick another port for gRPC"
        )
    if grpc_port is not None:
        check_port(host, grpc_port)
    options = [m if isinstance(m, ServeOptions) else ServeOptions(ref=m) for m in models]
    require_keys = auth_required(host, auth)
    if require_keys:
        warn_without_keys(ws)
    app_kwargs: dict[str, Any] = {
        "auth": require_keys,
        "poll_interval_s": poll_interval_s,
        "max_body_bytes": max_body_bytes,
        "threads": threads,
        "grpc_port": grpc_port,
        "grpc_host": host,
        "max_rpcs": max_connections,  # gRPC's cap on calls at once, beside HTTP's on sockets
        "max_batch_rows": max_batch_rows,
        "max_string_length": max_string_length,
        "grpc_tls": tls,
        "require_safe_formats": require_safe_formats,
    }
    # uvicorn's own TLS (None: plain HTTP); each worker passes the same to its uvicorn.
    certfile, keyfile = tls if tls is not None else (None, None)
    https = {"ssl_certfile": certfile, "ssl_keyfile": keyfile}
    common: dict[str, Any] = {
        "host": host,
        "port": port,
        "log_config": _logging.log_config(log_level),
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 30,
        **https,
    }
    limits = {
        "header_timeout_s": header_timeout_s,
        "body_timeout_s": body_timeout_s,
        "max_connections": max_connections,
    }
    if workers <= 1:
        set_body_timeout(body_timeout_s)  # before the app: its routes may read it when built
        log = ws.predictions if log_predictions else None
        app = create_app(
            ws.registry,
            options,
            features=features_of(ws),
            prediction_log=log,
            extend=added_by(extensions, ws),
            **app_kwargs,
        )
        http = protocol_class(header_timeout_s=header_timeout_s, max_connections=max_connections)
        settle_heap()
        server = uvicorn.Server(uvicorn.Config(asgi_entry(app), http=http, **common))
        run_until_sigterm(server)
        if not server.started:  # as uvicorn.run: a server that failed to start exits 3
            raise SystemExit(3)
        return
    # Load once in this process, so a bad reference fails here with one line.
    create_app(ws.registry, options, features=features_of(ws), **app_kwargs)
    spec = {
        "root": str(ws.config.root),
        "settings": {k.replace(".", "_"): ws.config[k] for k in _WIRING},
        "models": [o.model_dump(mode="json") for o in options],
        "app": app_kwargs,
        "log_predictions": log_predictions,
        "extensions": list(extensions),
    }
    with tempfile.TemporaryDirectory(prefix="modelyard-metrics-") as metrics_dir:
        os.environ[_SPEC_ENV] = json.dumps(spec)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        config = {
            "host": host,
            "port": port,
            "log_level": log_level,
            "grace_s": 30,
            **limits,
            **https,
        }
        supervise(workers, config)


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to any address
        return False


def auth_required(host: str, auth: bool | None) -> bool:
    """Whether the server checks API keys: on unless it listens on loopback only."""
    if auth is False:
        logger.warning(
            "serving on %s without API keys (--insecure-no-auth): anyone who can reach the "
            "port can predict, send labels and roll models back",
            host,
        )
        return False
    return auth is True or not is_loopback(host)


def warn_without_keys(ws: Workspace) -> None:
    from modelyard.security import list_keys

    if ws.remote is not None:
        return  # create_app refuses keys through a team server, in one line
    if not any(k.state() == "active" for k in list_keys(ws.metadata)):
        logger.warning(
            "this server requires API keys and the workspace has none: every request but "
            "the health checks will be refused; create one with 'modelyard keys create "
            "--role predictor -w %s'",
            ws.config.root,
        )


_WIRING = (
    "metadata.url",
    "artifacts.url",
    "artifacts.endpoint_url",
    "online.url",
    "offline.path",
    "predictions.url",
    "predictions.endpoint_url",
    "predictions.max_delay_s",
)


def app_from_env() -> FastAPI:
    """The app factory each worker process calls (see ``serve(workers=N)``)."""
    from modelyard.workspace import Workspace

    spec = json.loads(os.environ[_SPEC_ENV])
    ws = Workspace(Path(spec["root"]), **spec["settings"])
    options = [ServeOptions.model_validate(m) for m in spec["models"]]
    log = ws.predictions if spec["log_predictions"] else None
    kwargs = spec["app"]
    if kwargs.get("grpc_tls") is not None:  # a JSON list in the spec
        kwargs["grpc_tls"] = tuple(kwargs["grpc_tls"])
    return create_app(
        ws.registry,
        options,
        features=features_of(ws),
        prediction_log=log,
        extend=added_by(spec["extensions"], ws),
        **kwargs,
    )


def features_of(ws: Workspace) -> FeatureStore | None:
    """The feature store the server reads online features from; None through a team
    server, which keeps feature definitions in its database (serve them there)."""
    return ws.features if ws.remote is None else None


def added_by(extensions: Sequence[str], ws: Workspace) -> list[Callable[[FastAPI], None]]:
    """The functions ``extensions`` name (``module:function``), each bound to ``ws``; none
    through a team server (the dashboard reads the database: open it on the server's host)."""
    found: list[Callable[[FastAPI], None]] = []
    if ws.remote is not None:
        if extensions:
            logger.warning(
                "no dashboard at /ui: this workspace reaches the team server at %s, and the "
                "dashboard reads the metadata database (run 'modelyard ui' there)",
                ws.remote.url,
            )
        return found
    for name in extensions:
        module, _, attr = name.partition(":")
        function = getattr(importlib.import_module(module), attr)
        found.append(functools.partial(function, ws=ws))
    return found
