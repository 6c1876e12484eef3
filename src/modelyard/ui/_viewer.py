"""Who is looking at a dashboard page, and whether they may act.

``modelyard ui`` has no viewer (read-only, no sign-in); on ``modelyard serve`` the
server's key check (``serving/_auth.py``) has run before any page: the viewer is the
request's key (reader sees, admin acts), or, on a loopback server without keys, an
anonymous admin, as the API treats such requests. A page's template reads the viewer
from a context variable the router's dependency sets, so no route passes it by hand.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from fastapi import Request

from modelyard.security import Sessions
from modelyard.serving import request_key, request_session


@dataclass(frozen=True)
class Viewer:
    name: str
    role: str
    can_act: bool
    csrf: str
    signed_in: bool  # with a key (a sign-out button), not anonymous on a keyless server


_viewer: ContextVar[Viewer | None] = ContextVar("modelyard_ui_viewer", default=None)


def current_viewer() -> Viewer | None:
    return _viewer.get()


def viewer_of(request: Request, sessions: Sessions, keys_on: bool) -> Viewer:
    key = request_key(request.scope)
    session = request_session(request.scope)
    if key is None:
        name = "signed out" if keys_on else "anonymous (this server has no keys)"
        return Viewer(name, "none" if keys_on else "admin", not keys_on, sessions.csrf(""), False)
    return Viewer(key.name, key.role, key.role == "admin", sessions.csrf(session), True)


def viewer_dependency(sessions: Sessions, keys_on: bool):  # type: ignore[no-untyped-def]
    """A router dependency that makes the request's viewer the pages' (async: it runs in
    the request's own context, which the threads of sync routes copy)."""

    async def see(request: Request) -> None:
        _viewer.set(viewer_of(request, sessions, keys_on))

    return see
