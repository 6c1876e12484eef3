"""``modelyard models list|show|alias``."""

from __future__ import annotations

import typer
from rich.table import Table

from modelyard.cli._common import WorkspaceOpt, console, fmt_time, fmt_value, open_workspace

app = typer.Typer(help="Registered models, versions and aliases.", no_args_is_help=True)


@app.command("list")
def list_models(workspace: str = WorkspaceOpt) -> None:
    """Registered models with their latest version and aliases."""
    models = open_workspace(workspace).registry.list()
    table = Table(title=f"{len(models)} model(s)")
    for col in ("name", "latest", "aliases", "updated"):
        table.add_column(col)
    for m in models:
        aliases = ", ".join(f"{a} → {v}" for a, v in m.aliases.items())
        table.add_row(m.name, str(m.latest_version), aliases, fmt_time(m.updated_at))
    console.print(table)


@app.command("show")
def show_model(
    ref: str = typer.Argument(..., help="NAME (all versions), NAME@ALIAS or NAME/VERSION"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Versions of a model, or one version in full (signature, metrics, lineage)."""
    registry = open_workspace(workspace).registry
    if "@" not in ref and "/" not in ref:
        table = Table(title=f"model {ref}")
        for col in ("version", "aliases", "flavor", "run", "created", "metrics"):
            table.add_column(col, overflow="fold")
        for v in registry.versions(ref):
            metrics = ", ".join(f"{k}={fmt_value(x)}" for k, x in sorted(v.metrics.items())[:4])
            table.add_row(
                str(v.version),
                ", ".join(v.aliases),
                v.flavor,
                (v.run_id or "")[:12],
                fmt_time(v.created_at),
                metrics,
            )
        console.print(table)
        return
    v = registry.get(ref)
    table = Table(title=f"{v.name} version {v.version}", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value", overflow="fold")
    rows: list[tuple[str, object]] = [
        ("aliases", ", ".join(v.aliases)),
        ("flavor", v.flavor),
        ("description", v.description),
        ("artifact", v.artifact),
        ("run", v.run_id),
        ("created", fmt_time(v.created_at)),
    ]
    rows += [
        (f"input {f.name}", f.dtype + ("" if not f.nullable else " (nullable)"))
        for f in v.signature.inputs.fields
    ]
    rows += [(f"output {f.name}", f.dtype) for f in v.signature.outputs.fields]
    rows += [(f"metric {k}", x) for k, x in sorted(v.metrics.items())]
    rows += [(f"tag {k}", x) for k, x in sorted(v.tags.items())]
    rows += [
        (f"dataset {d['name']}", f"{d['fingerprint']} ({d.get('rows')} rows)")
        for d in v.lineage.get("datasets", [])
    ]
    for key, value in rows:
        if value not in (None, ""):
            table.add_row(key, fmt_value(value))
    console.print(table)


@app.command("alias")
def alias(
    name: str,
    alias: str,
    version: int = typer.Argument(None, help="version to point the alias at"),
    delete: bool = typer.Option(False, "--delete", help="remove the alias"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Set or move NAME@ALIAS to VERSION, or delete it with --delete."""
    registry = open_workspace(workspace).registry
    if delete:
        registry.delete_alias(name, alias)
        console.print(f"deleted {name}@{alias}")
        return
    if version is None:
        v = registry.get(f"{name}@{alias}")
        console.print(f"{name}@{alias} → version {v.version}")
        return
    v = registry.set_alias(name, alias, version)
    console.print(f"{name}@{alias} → version {v.version}")


@app.command("rollback")
def rollback(
    name: str,
    alias: str = typer.Option("production", "--alias", help="the alias to move back"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Move NAME@ALIAS back to the version it pointed at before its last move.

    Servers following the alias swap within their poll interval; the previous version
    is still loaded there, so the swap is instant.
    """
    registry = open_workspace(workspace).registry
    before = registry.get(f"{name}@{alias}").version
    v = registry.rollback(name, alias)
    console.print(f"{name}@{alias} → version {v.version} (was {before})")


@app.command("seal")
def seal(
    ref: str = typer.Argument(..., help="NAME/VERSION registered before seals existed"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Seal a version registered before seals, after checking its files against its
    manifest. Seal only what you trust: a sealed version loads on every server."""
    v = open_workspace(workspace).registry.seal_version(ref)
    console.print(f"sealed {v.name}/{v.version} ({v.artifact})")
