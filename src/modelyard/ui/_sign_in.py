"""Signing in to the dashboard on ``modelyard serve``: an API key in, a session cookie out.

The form posts the key once; the answer sets an HttpOnly, SameSite=Strict cookie that
names the key (``security/_sessions.py``), so the key never sits in the browser's
storage and a script on the page cannot read the session. A predictor key (made for
programs that predict) cannot open the dashboard: it needs a reader or admin key.
"""

from __future__ import annotations

from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.errors import ModelyardError
from modelyard.security import COOKIE, GRANTS, Sessions
from modelyard.serving import Guard
from modelyard.ui._render import render

MAX_FORM_BYTES = 4096


def sign_in_routes(guard: Guard, sessions: Sessions) -> APIRouter:
    """Sign-in and sign-out; ``guard`` (the server's key check) vouches for the key."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    keys_on = guard.ring is not None

    @router.get("/sign-in")
    async def form(next: str = "/ui/runs") -> Response:
        return _form(_next(next), None, keys_on)

    @router.post("/sign-in")
    async def sign_in(request: Request) -> Response:
        fields = await read_form(request)
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
    async def sign_out() -> Response:
        answer = RedirectResponse("/ui/sign-in", 303)
        answer.delete_cookie(COOKIE, path="/ui", httponly=True, samesite="strict")
        return answer

    return router


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
    parsed = parse_qs(body[:MAX_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=8)
    return {k: v[0] for k, v in parsed.items()}
