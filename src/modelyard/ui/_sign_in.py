"""Signing in to the dashboard on ``modelyard serve``: an API key in, a session cookie out.

The form posts the key once; the answer sets an HttpOnly, SameSite=Strict cookie that
names the key (``security/_sessions.py``), so the key never sits in the browser's
storage and a script on the page cannot read the session. A predictor key (made for
programs that predict) cannot open the dashboard: it needs a reader or admin key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from modelyard.errors import InvalidInputError, ModelyardError
from modelyard.security import COOKIE, GRANTS, SIGN_OUT, ApiKey, Sessions, record_session
from modelyard.serving import Guard, actor
from modelyard.ui._render import render

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

MAX_FORM_BYTES = 4096
MAX_FIELDS = 8


def sign_in_routes(ws: Workspace, guard: Guard, sessions: Sessions) -> APIRouter:
    """Sign-in and sign-out; ``guard`` (the server's key check) vouches for the key, and
    both are recorded in the audit log (a sign-out there ends the key's sessions)."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    keys_on = guard.ring is not None

    @router.get("/sign-in")
    async def form(next: str = "/ui/runs") -> Response:
        return _form(_next(next), None, keys_on)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        try:
            fields = await read_form(request)
        except ModelyardError as exc:
            return _form("/ui/runs", exc.message, keys_on, exc.status)
        target = _next(fields.get("next", "/ui/runs"))
        if not keys_on:
            return RedirectResponse(target, 303)
        try:
            key = await guard.key("Bearer " + fields.get("key", "").strip())
        except ModelyardError as exc:
            return _form(target, exc.message, keys_on, exc.status)
        if "read" not in GRANTS[key.role]:
            message = (
                f"{key.describe()} is a {key.role} key, made for programs that predict; "
                "the dashboard needs a reader or admin key ('modelyard keys create --role reader')"
            )
            return _form(target, message, keys_on, 403)
        await run_in_threadpool(
            record_session, ws.metadata, "ui.sign-in", actor(key, request.scope)
        )
        answer = RedirectResponse(target, 303)
        answer.set_cookie(
            COOKIE,
            sessions.issue(key.key_id),
            max_age=int(sessions.ttl_s),
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )
        return answer

    @router.post("/sign-out")
    async def sign_out(request: Request) -> Response:
        key = _session_key(guard, sessions, request.cookies.get(COOKIE, ""))
        if key is not None and guard.ring is not None:
            at = await run_in_threadpool(
                record_session, ws.metadata, SIGN_OUT, actor(key, request.scope)
            )
            guard.ring.signed_out[key.key_id] = at  # here at once; elsewhere at the reload
        answer = RedirectResponse("/ui/sign-in", 303)
        answer.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return answer

    return router


def _session_key(guard: Guard, sessions: Sessions, token: str) -> ApiKey | None:
    if not token or guard.ring is None:
        return None
    try:
        return guard.ring.by_id(sessions.key_id(token)[0])
    except ModelyardError:  # an expired or mangled session: nothing to end
        return None


def _form(target: str, error: str | None, keys_on: bool, status: int = 200) -> Response:
    page = render(
        "sign_in.html", title="Sign in", next=target, error=error, keys_on=keys_on, viewer=None
    )
    return HTMLResponse(page, status, headers={"cache-control": "no-store"})


def _next(target: str) -> str:
    """Only a dashboard page of this server (``//evil.example`` is another site)."""
    if target.startswith("/ui") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/runs"


async def read_form(request: Request) -> dict[str, str]:
    """A small url-encoded form's fields (the dashboard's forms; no python-multipart)."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            break
    if len(body) > MAX_FORM_BYTES:
        raise InvalidInputError(f"the form is over {MAX_FORM_BYTES} bytes; send it from its page")
    try:
        parsed = parse_qs(body.decode("utf-8", "replace"), max_num_fields=MAX_FIELDS)
    except ValueError:  # more fields than any of the dashboard's forms has
        raise InvalidInputError(
            f"the form has more than {MAX_FIELDS} fields; send it from its page"
        ) from None
    return {k: v[0] for k, v in parsed.items()}
