"""What the runs page adds around ``ws.runs.search``: the sort links of its column
headers.

A header's link orders the table in the syntax ``search(order_by=)`` parses
(``parse_order``: ``metrics.KEY DESC``, with backquotes around keys it cannot take
bare), so the address bar shows what ``runs list --order-by`` would be given.
"""

from __future__ import annotations

import re
from urllib.parse import urlencode

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
