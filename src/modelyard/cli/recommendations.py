"""``modelyard recommendations show|status|rollback``: the published nightly top-N lists.

The lists live in the workspace's online store, written by the recommendations
blueprint's nightly job (``RecommendationLists.publish``); the server reads them at
``GET /v1/recommendations/USER``. These commands read the same rows, and ``rollback``
switches every reader (this command, every server replica) back to the night before.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, fmt_time, open_workspace
from modelyard.errors import InvalidInputError, NotFoundError

if TYPE_CHECKING:
    from modelyard.serving import Publication, RecommendationLists
    from modelyard.workspace import Workspace

app = typer.Typer(
    help="Published recommendation lists: show a user's, status, roll back a night.",
    no_args_is_help=True,
)
_INTEGER = re.compile(r"-?[0-9]+")
_INT64 = (-(2**63), 2**63 - 1)
NOTHING = (
    "no recommendations are published{which} yet; run the nightly job "
    "(modelyard jobs run recommendations-nightly); in a new recommendations workspace, the "
    "quickstart first"
)


def _lists(workspace: str) -> RecommendationLists:
    from modelyard.serving import RecommendationLists

    return RecommendationLists(open_workspace(workspace).online)


def _whole(text: str, what: str, example: str) -> int:
    """A whole number given on the command line, in int64; else one line, exit 2."""
    if not _INTEGER.fullmatch(text.strip()):
        raise InvalidInputError(f"{what} {text!r} is not a whole number; e.g. {example}")
    value = int(text) if len(text.strip()) <= 40 else _INT64[1] + 1
    if not _INT64[0] <= value <= _INT64[1]:
        raise InvalidInputError(f"{what} {text[:40]} is beyond int64 (-2**63 to 2**63-1)")
    return value


@app.command("show")
def show(
    user_id: str = typer.Argument(..., metavar="USER_ID", help="the user's id (an integer)"),
    k: str = typer.Option(
        None, "--k", help="items to show (default: 10, or the night's k where smaller)"
    ),
    model: str = typer.Option(None, "--model", help="whose lists (default: newest published)"),
    as_json: bool = typer.Option(False, "--json", help="print as the server's JSON answer"),
    workspace: str = WorkspaceOpt,
) -> None:
    """A user's list of the current night, best first (the popularity list, marked, for
    a user the night did not score)."""
    user = _whole(user_id, "USER_ID", "modelyard recommendations show 42")
    count = None if k is None else _whole(k, "--k", "--k 10")
    found = _lists(workspace).read(user, k=count, model=model)
    p = found.publication
    if as_json:
        body = {
            "user_id": found.user_id,
            **_where(p),
            "fallback": "popularity" if found.fallback else False,
            "items": [
                {"item_id": i, "score": s} for i, s in zip(found.items, found.scores, strict=True)
            ],
        }
        print(json.dumps(body, indent=2))
        return
    kind = "[yellow]popularity list[/] (not in the night's lists)" if found.fallback else "own list"
    version = "?" if p.version is None else p.version
    console.print(f"user {found.user_id}: {escape(p.model)} v{version}, night {p.night}, {kind}")
    table = Table()
    for column in ("rank", "item_id", "score"):
        table.add_column(column, justify="right")
    for rank, (item, score) in enumerate(zip(found.items, found.scores, strict=True), 1):
        table.add_row(str(rank), str(item), f"{score:.6g}")
    console.print(table)


@app.command("status")
def status(
    model: str = typer.Option(None, "--model", help="whose lists (default: newest published)"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """The night readers get now: version, publish time, users, k, and the nights kept."""
    p = _lists(workspace).current(model)
    if p is None:
        raise NotFoundError(NOTHING.format(which=f" for model {model!r}" if model else ""))
    body = {
        **_where(p),
        "users": p.users,
        "k": p.k,
        "previous_night": p.previous_night,
        "kept_nights": list(p.kept_nights),
    }
    if as_json:
        print(json.dumps(body, indent=2))
        return
    table = Table(title=f"recommendations of {escape(p.model)}", show_header=False)
    table.add_column("what")
    table.add_column("value")
    shown = {
        **body,
        "version": "unknown" if p.version is None else p.version,
        "published_at": f"{fmt_time(p.published_at)} UTC",
        "previous_night": p.previous_night or "none (nothing to roll back to)",
        "kept_nights": ", ".join(p.kept_nights),
    }
    for name, value in shown.items():
        table.add_row(name.replace("_", " "), escape(str(value)))
    console.print(table)


@app.command("rollback")
def rollback(
    model: str = typer.Option(..., "--model", help="the model whose lists go back one night"),
    alias: str = typer.Option(
        "production",
        "--alias",
        help="the model's alias that follows the published night: moved back with the "
        "lists when it names the night's version ('' leaves aliases alone)",
    ),
    workspace: str = WorkspaceOpt,
) -> None:
    """Switch readers of MODEL's lists back to the previous night (kept by the publish)."""
    from modelyard.serving import RecommendationLists

    ws = open_workspace(workspace)
    lists = RecommendationLists(ws.online)
    before = lists.current(model)
    if before is None:
        raise NotFoundError(NOTHING.format(which=f" for model {model!r}"))
    _check_alias(ws, model, alias)  # a mistyped alias: nothing is switched
    after = lists.rollback(model)
    moved = _follow(ws, model, alias, before, after)
    console.print(
        escape(
            f"rolled back {model}: readers now get night {after.night} "
            f"(version {after.version}) instead of {before.night} (version {before.version})"
            + (f"; {model}@{alias} moved back to version {after.version}" if moved else "")
        ),
        soft_wrap=True,
    )


def _check_alias(ws: Workspace, model: str, alias: str) -> None:
    """``alias`` is one of ``model``'s (when the model is registered at all)."""
    if not alias:
        return
    try:
        versions = ws.registry.versions(model)
    except NotFoundError:
        return  # lists published without a registered model: no alias to follow
    aliases = sorted({a for v in versions for a in v.aliases})
    if alias not in aliases:
        known = ", ".join(aliases) or "none"
        raise InvalidInputError(
            f"model {model!r} has no alias {alias!r} (its aliases: {known}); give one of "
            "them with --alias, or --alias '' to leave aliases alone"
        )


def _follow(ws: Workspace, model: str, alias: str, before: Publication, after: Publication) -> bool:
    """Move ``alias`` from the rolled-back night's version to the restored night's, so the
    model served by the predict route and the lists stay one version; an alias that
    names another version (moved by hand) is left alone."""
    if not alias or after.version is None or before.version is None:
        return False
    try:
        current = ws.registry.get(f"{model}@{alias}")
    except NotFoundError:
        return False
    if current.version != before.version:
        return False
    ws.registry.set_alias(model, alias, after.version)
    return True


def _where(p: Publication) -> dict[str, Any]:
    return {
        "model": p.model,
        "night": p.night,
        "version": p.version,
        "published_at": p.published_at.isoformat().replace("+00:00", "Z"),
    }
