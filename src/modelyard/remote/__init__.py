"""The client side of the team server (``modelyard server``).

A workspace whose ``metadata.url`` is ``https://HOST:PORT`` (or ``http://`` to a loopback
address) has no database or bucket credentials: its runs, registry and artifacts go
through the server, with ``server.api_key`` as its key. ``Workspace`` builds these in
place of the direct stores; everything above them (the Python API, the CLI, ``load``)
is the same code.
"""

from typing import TYPE_CHECKING

from modelyard._lazy import lazy_exports

if TYPE_CHECKING:
    from modelyard.remote._artifacts import HttpArtifactStore
    from modelyard.remote._client import API, TeamClient
    from modelyard.remote._codec import decode, encode
    from modelyard.remote._registry import RemoteRegistry
    from modelyard.remote._tracking import RemoteRunStore, RemoteTracking
    from modelyard.remote._url import check_server_url, is_server_url

__all__ = [
    "API",
    "HttpArtifactStore",
    "RemoteRegistry",
    "RemoteRunStore",
    "RemoteTracking",
    "TeamClient",
    "check_server_url",
    "decode",
    "encode",
    "is_server_url",
]

_EXPORTS = {
    "modelyard.remote._artifacts": ["HttpArtifactStore"],
    "modelyard.remote._client": ["API", "TeamClient"],
    "modelyard.remote._codec": ["decode", "encode"],
    "modelyard.remote._registry": ["RemoteRegistry"],
    "modelyard.remote._tracking": ["RemoteRunStore", "RemoteTracking"],
    "modelyard.remote._url": ["check_server_url", "is_server_url"],
}

if not TYPE_CHECKING:  # loaded on first use; type checkers see the imports above
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
