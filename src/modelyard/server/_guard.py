"""Who may call the team server: the workspace's API keys and roles (``modelyard keys``).

Reading needs the ``read`` permission (reader, trainer, admin), logging runs, artifacts and
model versions ``track`` (trainer, admin), moving aliases ``admin``, as on ``modelyard
serve``. The MLflow client sends a key as ``MLFLOW_TRACKING_TOKEN`` (``Authorization:
Bearer KEY``). Without auth (a loopback bind, or ``--insecure-no-auth``) every call passes.
"""

from __future__ import annotations

import asyncio
import math
import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from modelyard.security import Actor, ApiKey, KeyRing, bearer, command_line_actor

if TYPE_CHECKING:
    from modelyard.backends.metadata import MetadataStore
    from modelyard.security import Permission

REFRESH_S = 5.0  # a revoked key stops working within this long


class Guard:
    def __init__(self, metadata: MetadataStore, *, auth: bool) -> None:
        self.auth = auth
        self._keys = KeyRing(metadata) if auth else None
        self._refreshed = -math.inf

    async def check(
        self, authorization: str | None, permission: Permission, what: str
    ) -> ApiKey | None:
        """The caller's key, once it is known to hold ``permission``. Keys are checked in
        memory; they are reloaded every ``REFRESH_S`` (a revocation), and at once (at most
        once a second) for a key id not seen yet (a key made a moment ago)."""
        keys = self._keys
        if keys is None or permission == "public":
            return None
        presented = bearer(authorization)
        wait = keys.reload_wait(presented)
        if wait is not None:
            await asyncio.sleep(wait)
        if wait is not None or time.monotonic() - self._refreshed > REFRESH_S:
            await run_in_threadpool(keys.refresh)
            self._refreshed = time.monotonic()
        key = keys.check(presented)
        keys.permit(key, permission, None, what)
        return key


def actor_of(key: ApiKey | None) -> Actor:
    """The audit log's "who" for an admin action taken through the server."""
    if key is None:
        return command_line_actor(via="server")
    return Actor(name=key.name, source="modelyard server", key_id=key.key_id)
