"""Which metadata URLs name a team server, and which of them are safe to use."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from modelyard._redact import redact
from modelyard.errors import ConfigError


def is_server_url(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_server_url(url: str) -> str:
    """The URL without a trailing slash; ``http://`` only to a loopback address, where no
    key travels over a network in clear."""
    parts = urlsplit(url)
    if not parts.hostname:
        raise ConfigError(f"metadata.url {redact(url)!r} names no host; write https://HOST:PORT")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConfigError(
            f"metadata.url {redact(url)!r} is plain http to another host, which would send "
            "the API key in clear; use https:// (modelyard server --ssl-certfile …)"
        )
    return url.rstrip("/")
