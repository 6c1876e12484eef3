"""The dashboard's error pages: a ``ModelyardError`` raised by a page, or a query parameter
FastAPI refuses, answers the error page (HTML, the error's own status, its one-line
message) instead of a traceback and a plain-text 500, or JSON.

``install_error_pages(app)`` installs the handlers on ``modelyard ui``'s app and on the
model server's: there, paths outside /ui keep the server's own handlers (the API answers
JSON), which the installed ones call. Installing twice changes nothing.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response

from modelyard.errors import ModelyardError
from modelyard.ui._render import render

logger = logging.getLogger("modelyard.ui")

TITLES = {
    400: "Bad request",
    401: "Sign in needed",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    503: "Back end unavailable",
}

Handler = Callable[[Request, Any], Response | Awaitable[Response]]


def title_of(status: int) -> str:
    """The error page's heading for ``status``: it says what kind of error it is."""
    if status in TITLES:
        return TITLES[status]
    return "Bad request" if 400 <= status < 500 else "Error"


def error_page(message: str, status: int, headers: dict[str, str] | None = None) -> Response:
    """The error page: ``message`` (escaped by the template) under a title that fits ``status``."""
    page = render("error.html", title=title_of(status), message=message)
    return HTMLResponse(page, status, headers=headers)


def page_of(exc: ModelyardError) -> Response:
    """The error page of ``exc``: its status, its message, its headers (``Retry-After``)."""
    return error_page(exc.message, exc.status, getattr(exc, "headers", None))


def install_error_pages(app: FastAPI) -> None:
    """Answer the errors of /ui pages with the error page; keep ``app``'s own handlers for
    every other path (``modelyard serve``'s JSON errors)."""
    for kind, page in ((ModelyardError, _modelyard_page), (RequestValidationError, _invalid_page)):
        before = app.exception_handlers.get(kind)
        if isinstance(before, _UiFirst):
            continue  # installed already
        app.add_exception_handler(kind, _UiFirst(page, before))


class _UiFirst:
    """An exception handler: ``page`` on /ui paths, else the handler that was there."""

    def __init__(self, page: Callable[[Exception], Response], before: Handler | None) -> None:
        self.page = page
        self.before = before

    async def __call__(self, request: Request, exc: Exception) -> Response:
        path = request.scope.get("path", "")
        if self.before is not None and not (path == "/ui" or path.startswith("/ui/")):
            answer = self.before(request, exc)
            return await answer if inspect.isawaitable(answer) else answer
        response = self.page(exc)
        if response.status_code >= 500:  # one line for the operator; no traceback
            logger.warning("%s %s: %s", request.method, path, getattr(exc, "message", exc))
        return response


def _modelyard_page(exc: Exception) -> Response:
    assert isinstance(exc, ModelyardError)
    return page_of(exc)


def _invalid_page(exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for error in exc.errors():
        where, *names = [str(part) for part in error.get("loc", ())] or ["request"]
        name = ".".join(names) or where
        kind = f"{where} parameter" if where in ("query", "path", "header", "cookie") else where
        problems.append(f"{kind} {name!r}: {error.get('msg', 'invalid')}")
    message = "bad " + "; ".join(problems or ["request"]) + "; fix it in the address"
    return error_page(message, 400)
