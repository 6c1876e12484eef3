"""``modelyard keys create|list|revoke`` and ``modelyard audit``."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import typer
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, err_console, fmt_time, open_workspace

app = typer.Typer(help="API keys for the model server: create, list, revoke.", no_args_is_help=True)
_ACTIONS = ("alias", "traffic", "key", "model")


@app.command("create")
def create(
    role: str = typer.Option(
        ..., "--role", help="admin, predictor, reader or trainer (logs runs, registers versions)"
    ),
    name: str = typer.Option(None, "--name", help="a name for lists and the audit log"),
    models: str = typer.Option(None, "--models", help="NAME,NAME: only these models"),
    expires: str = typer.Option(None, "--expires", help="lifetime: 90d, 12h, 2w"),
    rate: float = typer.Option(None, "--rate", help="most requests per second (429 beyond)"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Create a key and print it once on stdout; only a salted hash of it is kept."""
    from modelyard._time import parse_duration
    from modelyard.security import create_key

    ws = open_workspace(workspace)
    lifetime = None if expires is None else parse_duration(expires, "--expires")
    chosen = None if models is None else models.split(",")
    if chosen is not None:
        known = {m.name for m in ws.registry.list()}
        for name in sorted({c.strip() for c in chosen} - known - {""}):
            err_console.print(f"warning: no model '{escape(name)}' is registered (yet)")
    key, plain = create_key(
        ws.metadata, role, name=name, models=chosen, expires=lifetime, rate=rate
    )
    print(plain)
    until = "never expires" if key.expires_at is None else f"expires {fmt_time(key.expires_at)} UTC"
    scope = "all models" if key.models is None else ", ".join(key.models)
    err_console.print(
        f"created {escape(key.describe())} for {escape(scope)}, {until}. This is the only "
        "time the key is shown: keep it in a secret store; clients send it as "
        "'Authorization: Bearer KEY'.",
        soft_wrap=True,
    )


@app.command("list")
def list_command(
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Every key (never its secret): id, name, role, models, state, times."""
    from modelyard.security import list_keys

    keys = list_keys(open_workspace(workspace).metadata)
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "key_id": k.key_id,
                        "name": k.name,
                        "role": k.role,
                        "models": k.models,
                        "state": k.state(),
                        "rate": k.rate,
                        "created_at": k.created_at.isoformat(),
                        "created_by": k.created_by,
                        "expires_at": k.expires_at and k.expires_at.isoformat(),
                        "revoked_at": k.revoked_at and k.revoked_at.isoformat(),
                    }
                    for k in keys
                ]
            )
        )
        return
    table = Table(title=f"{len(keys)} key(s)")
    for col in ("id", "name", "role", "models", "state", "rate/s", "created", "by", "expires"):
        table.add_column(col, overflow="fold")
    for k in keys:
        table.add_row(
            k.key_id,
            escape(k.name),
            k.role,
            "all" if k.models is None else escape(", ".join(k.models)),
            k.state(),
            "" if k.rate is None else f"{k.rate:g}",
            fmt_time(k.created_at),
            escape(k.created_by),
            fmt_time(k.expires_at),
        )
    console.print(table)


@app.command("revoke")
def revoke(
    key: str = typer.Argument(..., help="the key's id (from keys list) or name"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Revoke a key: servers refuse it within their --poll-interval."""
    from modelyard.security import revoke_key

    revoked = revoke_key(open_workspace(workspace).metadata, key)
    console.print(f"revoked {escape(revoked.describe())}")


def audit(
    since: str = typer.Option("30d", "--since", help="how far back: 1h, 1d, 2w"),
    action: str = typer.Option(None, "--action", help="alias, rollback, traffic, key …"),
    target: str = typer.Option(None, "--target", help="a model name or key id"),
    limit: int = typer.Option(100, "--limit", min=1, help="newest N events"),
    as_json: bool = typer.Option(False, "--json", help="print as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Admin actions: alias moves, rollbacks, traffic changes, keys; who, from where, when."""
    from modelyard._time import parse_duration
    from modelyard.errors import ConfigError
    from modelyard.security import audit_events

    if action is not None and action.split(".")[0] not in _ACTIONS:
        raise ConfigError(
            f"--action {action!r}: admin actions are {', '.join(_ACTIONS)} (or one in full, "
            "e.g. alias.rollback)"
        )
    start = datetime.now(UTC) - parse_duration(since, "--since")
    events = audit_events(
        open_workspace(workspace).metadata,
        since=start,
        action=action,
        target=target,
        limit=limit,
    )
    if as_json:
        print(
            json.dumps(
                [
                    {
                        "at": e.at.isoformat(),
                        "action": e.action,
                        "target": e.target,
                        "details": dict(e.details),
                        "actor": e.actor,
                        "key_id": e.key_id,
                        "source": e.source,
                    }
                    for e in events
                ]
            )
        )
        return
    if not events:
        console.print(f"no admin actions in the last {since}")
        return
    table = Table(title=f"admin actions, last {since} (newest first)")
    for col in ("at", "action", "target", "details", "actor", "key", "source"):
        table.add_column(col, overflow="fold")
    for e in events:
        shown = {k: "all" if k == "models" and v is None else v for k, v in e.details.items()}
        details = ", ".join(f"{k}={v}" for k, v in shown.items())
        table.add_row(
            fmt_time(e.at),
            e.action,
            escape(e.target),
            escape(details),
            escape(e.actor),
            e.key_id or "",
            escape(e.source),
        )
    console.print(table)
