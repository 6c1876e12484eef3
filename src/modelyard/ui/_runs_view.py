"""What the runs pages add around ``ws.runs``: the sort links of the runs table's column
headers, and the model versions a run's page links to (``registered_from``).

A header's link orders the table in the syntax ``search(order_by=)`` parses
(``parse_order``: ``metrics.KEY DESC``, with backquotes around keys it cannot take
bare), so the address bar shows what ``runs list --order-by`` would be given.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from modelyard.errors import NotFoundError

if TYPE_CHECKING:
    from modelyard.registry import ModelVersion
    from modelyard.tracking import RunInfo
    from modelyard.workspace import Workspace

MAX_MODELS_READ = 50  # models whose versions a run's page reads, looking for its own
CLOCK_SKEW = timedelta(minutes=10)  # a run's host and a registering host may disagree

_BARE_KEY = re.compile(r"[\w\-./:]+")  # what parse_order takes without backquotes


def order_text(kind: str, key: str, descending: bool) -> str:
    """The ``order_by`` text: ``metrics.auc DESC``, ``metrics.`a b` ASC``, ``start_time ASC``
    (kind ``attr``: a column of the run itself)."""
    shown = key if _BARE_KEY.fullmatch(key) else f"`{key}`"
    column = key if kind == "attr" else f"{kind}.{shown}"
    return f"{column} {'DESC' if descending else 'ASC'}"


def sort_link(kind: str, key: str, *, order: str, filter: str, experiment: str) -> tuple[str, str]:
    """(href, arrow) of a header: descending first, ascending when clicked again.

    The arrow shows the current order of this column ("▼", "▲" or "")."""
    desc, asc = order_text(kind, key, True), order_text(kind, key, False)
    current = " ".join(order.split()).upper()
    arrow = "▼" if current == desc.upper() else "▲" if current == asc.upper() else ""
    query = {"filter": filter, "experiment": experiment, "order": asc if arrow == "▼" else desc}
    return "/ui/runs?" + urlencode({k: v for k, v in query.items() if v}), arrow


def registered_from(ws: Workspace, run: RunInfo) -> tuple[list[ModelVersion], bool]:
    """(the model versions registered from ``run``, whether every model was searched).

    The registry records each version's run, not each run's versions. A model last changed
    (``updated_at``: a registration sets it) before the run started holds none of them, so
    only the others are read, the most recently changed first, at most ``MAX_MODELS_READ``.
    """
    since = run.start_time - CLOCK_SKEW
    models = sorted(
        (m for m in ws.registry.list() if m.updated_at >= since),
        key=lambda m: m.updated_at,
        reverse=True,
    )
    found: list[ModelVersion] = []
    for model in models[:MAX_MODELS_READ]:
        try:
            found += [v for v in ws.registry.versions(model.name) if v.run_id == run.run_id]
        except NotFoundError:  # deleted since the list was read
            continue
    return sorted(found, key=lambda v: (v.name, v.version)), len(models) <= MAX_MODELS_READ
