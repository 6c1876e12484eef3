"""What an admin may do from the dashboard on ``modelyard serve``: move an alias, roll
an alias back, stop a canary. Each goes through the function the command line calls
(``Registry.set_alias`` as ``models alias``, ``release.rollback`` as ``release rollback``,
``release.stop_canary`` as ``canary --stop``), so the audit log and the release records
are the same whichever door was used; the audit names the signed-in key.

Every action has a confirmation page (GET, says what will change) whose form posts the
action with the session's CSRF token; the server has already checked the admin role
before the route runs (``serving/_auth.py``: ``/ui/actions/*`` needs ``admin``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelyard.errors import ConfigError, ConflictError, ModelyardError
from modelyard.security import Sessions
from modelyard.serving import request_session
from modelyard.ui._errors import page_of
from modelyard.ui._render import render
from modelyard.ui._sign_in import read_form
from modelyard.ui._viewer import current_viewer

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

ACTIONS = ("alias", "rollback", "stop-canary")


def action_routes(ws: Workspace, sessions: Sessions) -> APIRouter:
    router = APIRouter(prefix="/ui", include_in_schema=False)

    @router.get("/models/{name}/confirm")
    def confirm(name: str, action: str, alias: str = "production", version: str = "") -> Response:
        try:
            what, current = _describe(ws, name, action, alias, version)
        except ModelyardError as exc:
            return page_of(exc)
        return HTMLResponse(
            render(
                "confirm.html",
                title=f"Confirm: {action} {name}",
                name=name,
                action=action,
                alias=alias,
                version=version,
                what=what,
                current="" if current is None else current,
            ),
            headers={"cache-control": "no-store"},
        )

    @router.post("/actions/{action}")
    async def act(action: str, request: Request) -> Response:
        try:
            fields = await read_form(request)
            sessions.check_csrf(request_session(request.scope), fields.get("csrf", ""))
            name = fields.get("model", "")
            await _run(ws, action, name, fields)
        except ModelyardError as exc:
            return page_of(exc)
        # The model page words the notice from what the registry holds now: a code in the
        # address, never text (a link with made-up text would show it as a notice).
        done = urlencode({"done": action, "alias": fields.get("alias", "production")})
        return RedirectResponse(f"/ui/models/{quote(name, safe='')}?{done}", 303)

    return router


def _describe(
    ws: Workspace, name: str, action: str, alias: str, version: str
) -> tuple[str, int | None]:
    """What the action will change, read now (the confirmation page shows it), and the
    version the alias points at now (the form sends it back: a move made meanwhile by
    someone else is refused, not overwritten)."""
    if action not in ACTIONS:
        raise ConfigError(f"unknown action {action!r}; the dashboard offers {', '.join(ACTIONS)}")
    if action == "stop-canary":
        from modelyard.registry import get_traffic

        split = get_traffic(ws.registry, name)
        if split is None:
            raise ConfigError(f"no canary of {name} is running: there is nothing to stop")
        text = f"stop the canary ({split.describe()}): all traffic goes back to the champion"
        return text, None
    current = _points_at(ws, name, alias)
    if action == "rollback":
        before = ws.registry.rollback_target(name, alias)
        if before is None:
            raise ConflictError(
                f"{name}@{alias} has no earlier version to roll back to; move it with the "
                "form on the model's page instead"
            )
        return f"move {name}@{alias} back from version {current} to version {before}", current
    target = ws.registry.get(f"{name}/{_version(version)}")  # 404: no such version
    shown = current or "(unset)"
    return f"move {name}@{alias} from version {shown} to version {target.version}", current


def _points_at(ws: Workspace, name: str, alias: str) -> int | None:
    try:
        return ws.registry.get(f"{name}@{alias}").version
    except ModelyardError:
        ws.registry.versions(name)  # 404 for an unknown model; an unset alias is None
        return None


async def _run(ws: Workspace, action: str, name: str, fields: dict[str, str]) -> str:
    """Take ``action`` (off the event loop: each writes the metadata store)."""
    from starlette.concurrency import run_in_threadpool

    viewer = current_viewer()
    actor = f"{viewer.name} (dashboard)" if viewer is not None else "dashboard"
    alias = fields.get("alias", "production")
    if action == "alias":
        version = _version(fields.get("version", ""))
        seen = fields.get("current", "")
        expect = _version(seen) if seen else None
        moved = await run_in_threadpool(
            lambda: ws.registry.move_alias(name, alias, version, expect=expect)
        )
        return f"{name}@{alias} now points at version {moved.version}"
    if action == "rollback":
        from modelyard.release import rollback

        back = await run_in_threadpool(
            lambda: rollback(
                ws, name, alias=alias, reason="rolled back from the dashboard", actor=actor
            )
        )
        return f"rolled {name}@{alias} back to version {back.version}"
    if action == "stop-canary":
        from modelyard.release import stop_canary

        stopped = await run_in_threadpool(lambda: stop_canary(ws, name, actor=actor))
        return f"stopped the canary: {stopped}" if stopped else f"no canary of {name} was running"
    raise ConfigError(f"unknown action {action!r}; the dashboard offers {', '.join(ACTIONS)}")


def _version(text: str) -> int:
    digits = text.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 9:
        raise ConfigError(f"version {text[:20]!r} is not a version number; pick one from the list")
    return int(digits)
