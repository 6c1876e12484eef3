"""``modelyard lineage REQUEST_ID_OR_MODEL_REF``: a prediction's chain back to its source data."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import typer
from rich.markup import escape
from rich.tree import Tree

from modelyard.cli._common import WorkspaceOpt, console, fmt_time, open_workspace

SHORT = 12  # hex digits of a fingerprint shown (--json prints them whole)


def lineage(
    ref: str = typer.Argument(
        ...,
        metavar="REQUEST_ID_OR_MODEL_REF",
        help="a prediction's request id (its X-Request-ID), or NAME@ALIAS / NAME/VERSION",
    ),
    as_json: bool = typer.Option(False, "--json", help="print the chain as JSON"),
    workspace: str = WorkspaceOpt,
) -> None:
    """Lineage of a prediction or a model version: version, run, data sets, feature
    service, views, and each view's source with the fingerprint of its data at training."""
    from modelyard.monitoring import lineage_of

    found = lineage_of(open_workspace(workspace), ref)
    if as_json:
        print(json.dumps(found.to_json_dict(), indent=2))
        return
    console.print(tree(found.to_json_dict()))


def tree(chain: dict[str, Any]) -> Tree:
    """The chain (``Lineage.to_json_dict()``) as a rich tree, one hop per level."""
    v = chain["version"]
    ref = f"{v['name']}/{v['version']}"
    version = (
        f"[bold]model version[/] {escape(ref)}  artifact {short(v['artifact'])}  "
        f"registered {_time(v['registered_at'])}"
        + (f"  aliases {escape(', '.join(v['aliases']))}" if v["aliases"] else "")
    )
    p = chain["prediction"]
    if p is not None:
        root = Tree(
            f"[bold]prediction[/] {escape(p['request_id'])}  {_time(p.get('time'))}  "
            f"{escape(ref)} variant {escape(str(p.get('variant') or '-'))}  "
            f"({p['rows']} row{'s' if p['rows'] != 1 else ''})"
        )
        node = root.add(version)
    else:
        root = node = Tree(version)
    run = chain["run"]
    if run is None:
        node.add("[bold]run[/] [dim]none recorded (registered from outside a run)[/]")
        _binding(node, chain)
        return root
    name = escape(run["name"]) if run["name"] else f"[red]{escape(run['error'] or '')}[/]"
    at = node.add(
        f"[bold]run[/] {name} ({escape(run['run_id'][:8])})  "
        f"git {escape(str(run['git_commit'] or 'unknown'))}  "
        f"seed {'none' if run['seed'] is None else run['seed']}"
    )
    for ds in run["datasets"]:
        at.add(
            f"data set {escape(ds['name'])}  {short(ds['fingerprint'])}  "
            f"[dim]({escape(str(ds['context']))}, {ds['rows']} rows)[/]"
        )
    for service in chain["features"]:
        _service(at, service)
    if not chain["features"]:
        at.add(
            "[dim]feature lineage not recorded: build the training set with "
            "ws.features.get_historical(..., run=run)[/]"
        )
    _binding(node, chain)
    return root


def _service(parent: Tree, service: dict[str, Any]) -> None:
    label = escape(str(service.get("service") or "(feature refs)"))
    number = service.get("version")
    built = service.get("training_set") or {}
    node = parent.add(
        f"[bold]feature service[/] {label} v{number if number is not None else '?'}"
        + (f"  training set {short(built.get('fingerprint'))}" if built else "")
    )
    for view in service.get("views", []):
        at = node.add(
            f"[bold]view[/] {escape(view['name'])} v{view.get('version')}  "
            f"[dim]({escape(', '.join(view.get('features', [])))})[/]"
        )
        at.add(_source(view))


def _source(view: dict[str, Any]) -> str:
    spec = view.get("source") or {}
    kind = spec.get("kind", "?")
    if kind == "parquet":
        where = spec.get("path")
    elif kind == "sql":
        where = f"{spec.get('query')} over {', '.join(spec.get('paths', []))}"
    else:
        where = f"{spec.get('url')} {spec.get('table') or spec.get('query')}"
    print_ = view.get("fingerprint")
    found = (
        short(print_)
        if print_
        else f"[yellow]no fingerprint[/]: {escape(str(view.get('fingerprint_note', '')))}"
    )
    parts = []
    if view.get("files") is not None:
        parts.append(f"{view['files']} file{'s' if view['files'] != 1 else ''}")
    parts.append(f"{view.get('pushed_files', 0)} pushed")
    ranges = view.get("backfilled") or []
    if ranges:
        parts.append("backfilled " + ", ".join(f"{_day(a)} → {_day(b)}" for a, b in ranges))
    counts = escape("; ".join(parts))
    return f"[bold]source[/] {escape(kind)} {escape(str(where))}  {found}  [dim]{counts}[/]"


def _binding(parent: Tree, chain: dict[str, Any]) -> None:
    bound = chain.get("binding")
    if bound is None:
        return
    now = bound.get("current_version")
    note = f" (now v{now})" if now is not None else ""
    if bound.get("error"):
        note += f" [red]{escape(bound['error'])}[/]"
    if not bound.get("recorded"):
        note += " [dim]not in the recorded training lineage[/]"
    parent.add(f"[bold]serves online features of[/] {escape(bound['service'])}{note}")


def short(fingerprint: Any) -> str:
    """``sha256:0123456789ab…`` (the whole value with --json)."""
    text = str(fingerprint or "")
    algorithm, sep, digest = text.partition(":")
    if not sep:
        return escape(text[:SHORT])
    return escape(f"{algorithm}:{digest[:SHORT]}…" if len(digest) > SHORT else text)


def _time(value: Any) -> str:
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return escape(value)
    return fmt_time(value) if isinstance(value, datetime) else ""


def _day(value: str) -> str:
    return escape(value[:19].replace("T", " ").removesuffix(" 00:00:00"))
