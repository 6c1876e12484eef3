"""Start the server: check the port first, so a busy port is a one-line error."""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from modelyard.errors import ConfigError
from modelyard.registry import Registry
from modelyard.serving import _logging
from modelyard.serving.app import create_app


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


def serve(
    registry: Registry,
    refs: Sequence[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    log_level: str = "info",
) -> None:
    """Load ``refs`` and serve them until interrupted (SIGINT/SIGTERM drain and exit)."""
    import uvicorn

    _logging.configure(log_level)
    check_port(host, port)
    app = create_app(registry, refs)
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=_logging.log_config(log_level),
        access_log=False,
        server_header=False,
    )
