"""The dashboard's page of one input column: its histogram in the reference profile against
the one of logged traffic over a window, with the column's drift verdict.

The shares per bin and the verdict are ``monitoring.window_drift``'s, the function behind
``modelyard monitor drift``; this module only draws them. Numeric bins are the reference's
equal-mass bins, labelled at their edges; categories are the reference's, then new ones.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from markupsafe import Markup

from modelyard.errors import InvalidInputError, ModelyardError, NotFoundError
from modelyard.ui import _charts

if TYPE_CHECKING:
    from modelyard.monitoring import ColumnDrift, Profile
    from modelyard.workspace import Workspace

MAX_BARS = 40  # categories past this many are left out of the chart, not the table


def column_picker(ws: Workspace, ref: str) -> tuple[list[dict[str, str]], str]:
    """(each input column of ``ref``'s reference profile with its kind, a note why there
    are none)."""
    from modelyard.monitoring import reference_of

    try:
        _, reference = reference_of(ws.registry, ref)
    except ModelyardError as exc:  # no such alias, or no reference profile: say which
        if exc.status >= 500:
            raise  # a back end that is down is the page's error, not a note
        return [], exc.message
    return [{"name": n, "kind": c.kind} for n, c in reference.columns.items()], ""


def column_view(
    ws: Workspace, model: str, column: str, *, alias: str, window: str, span: timedelta
) -> dict[str, Any]:
    """What monitor_column.html shows; NotFoundError for an unknown model or column."""
    from modelyard.monitoring import SampleSize, reference_of, window_drift

    ref = f"{model}@{alias}"
    version, reference = reference_of(ws.registry, ref)
    if column not in reference.columns:
        raise NotFoundError(
            f"{version.ref} has no input column {column!r} in its reference profile; "
            f"pick one of: {', '.join(reference.columns)}"
        )
    view: dict[str, Any] = {
        "version": version.ref,
        "columns": [{"name": n, "kind": c.kind} for n, c in reference.columns.items()],
        "chart": None,
        "note": "",
        "verdict": None,
    }
    try:
        _, report = window_drift(ws.registry, ref, ws.predictions, span, min_rows=1)
    except InvalidInputError as exc:
        # window_drift refuses an empty window; anything else it refuses is shown as is.
        empty = exc.message.startswith("no predictions")
        view["note"] = (
            f"no predictions of {version.ref} in the last {window}: serve some traffic or "
            "widen the window"
            if empty
            else exc.message
        )
        return view
    found = report.columns[column]
    short = SampleSize.of(ws.config).short_of_rows(report.rows_current)
    view.update(
        rows_current=report.rows_current,
        rows_reference=report.rows_reference,
        chart=_histogram(found, reference, window),
        # The shares are facts at any size; whether they drifted needs enough rows.
        note=short,
        verdict=None if short else found,
        hidden=max(len(found.bins) - MAX_BARS, 0),
    )
    return view


def _histogram(found: ColumnDrift, reference: Profile, window: str) -> Markup:
    bins = list(found.bins)[:MAX_BARS]
    series = [
        ("reference", found.reference[:MAX_BARS]),
        (f"current ({window})", found.current[:MAX_BARS]),
    ]
    profiled = reference.columns[found.column]
    edges = profiled.edges if profiled.kind == "numeric" else None
    return _charts.bars(
        f"{found.column}: reference vs current",
        bins,
        series,
        x_label=f"{found.column} ({'bin edges' if edges is not None else 'categories'})",
        edges=edges,
    )
