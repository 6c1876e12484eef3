"""Parse run filters such as ``params.lr = '0.1' and metrics.auc >= 0.9 and tags.team = 'x'``.

The grammar is MLflow's filter subset that people actually type: clauses joined by
``and``; each ``KIND.KEY OP VALUE`` (kind: params, metrics, tags) or ``ATTR OP VALUE``
(attr: name, status, experiment; MLflow's ``attributes.`` prefix may precede it). Keys
with spaces or dots go in backquotes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from modelyard.errors import InvalidInputError

Kind = Literal["params", "metrics", "tags", "attr"]
OPS = ("=", "!=", ">=", "<=", ">", "<")
ATTRIBUTES = ("name", "status", "experiment", "run_id")
_KINDS = {
    "params": "params",
    "param": "params",
    "metrics": "metrics",
    "metric": "metrics",
    "tags": "tags",
    "tag": "tags",
}

_CLAUSE = re.compile(
    r"""\s*(?:attributes?\.)?(?:(?P<kind>[A-Za-z]+)\.(?:`(?P<qkey>[^`]+)`|(?P<key>[\w\-./:]+))|(?P<attr>[A-Za-z_]+))
        \s*(?P<op>!=|>=|<=|=|>|<)\s*
        (?:'(?P<sq>[^']*)'|"(?P<dq>[^"]*)"|(?P<num>[-+]?[\d.]+(?:[eE][-+]?\d+)?))\s*$""",
    re.VERBOSE,
)


# "and" between clauses, or a quoted string skipped whole so that an "and" inside a
# value or a backquoted key ("tags.note = 'salt and pepper'") does not split it.
_AND_OR_QUOTED = re.compile(r"""\s+and\s+|'[^']*'|"[^"]*"|`[^`]*`""", re.IGNORECASE)


def _split_and(text: str) -> list[str]:
    parts: list[str] = []
    start = 0
    for m in _AND_OR_QUOTED.finditer(text):
        if m.group(0)[0] not in "'\"`":
            parts.append(text[start : m.start()])
            start = m.end()
    parts.append(text[start:])
    return parts


@dataclass(frozen=True)
class Clause:
    kind: Kind
    key: str
    op: str
    value: str | float


def parse_filter(text: str | None) -> list[Clause]:
    if text is None or not text.strip():
        return []
    clauses: list[Clause] = []
    for part in _split_and(text.strip()):
        m = _CLAUSE.match(part)
        if m is None:
            raise InvalidInputError(
                f"cannot parse filter clause {part!r}; write e.g. "
                "\"metrics.auc > 0.9 and params.model = 'lr'\""
            )
        value: str | float
        if m["num"] is not None:
            try:
                value = float(m["num"])
            except ValueError:
                raise InvalidInputError(f"{m['num']!r} in {part!r} is not a number") from None
        else:
            value = m["sq"] if m["sq"] is not None else m["dq"]
        if m["attr"] is not None:
            if m["attr"] not in ATTRIBUTES:
                raise InvalidInputError(
                    f"unknown run attribute {m['attr']!r} in filter; use one of "
                    f"{', '.join(ATTRIBUTES)} or params.KEY, metrics.KEY, tags.KEY"
                )
            if m["attr"] == "status" and isinstance(value, str):
                value = value.lower()  # MLflow's RUNNING is modelyard's running
            clauses.append(Clause("attr", m["attr"], m["op"], value))
            continue
        kind = _KINDS.get(m["kind"].lower())
        if kind is None:
            raise InvalidInputError(
                f"unknown filter prefix {m['kind']!r}; use params., metrics. or tags."
            )
        key = m["qkey"] if m["qkey"] is not None else m["key"]
        if kind == "metrics" and isinstance(value, str):
            raise InvalidInputError(f"metric {key!r} compares with a number, not {value!r}")
        if kind != "metrics" and isinstance(value, float):
            # params and tags are strings; "params.depth = 3" means the string "3".
            value = m["num"]
        clauses.append(Clause(kind, key, m["op"], value))  # type: ignore[arg-type]
    return clauses


def parse_order(text: str | None) -> tuple[Kind, str, bool] | None:
    """``"metrics.auc DESC"`` -> ("metrics", "auc", True)."""
    if text is None or not text.strip():
        return None
    m = re.fullmatch(
        r"\s*(?:(?P<kind>[A-Za-z]+)\.(?:`(?P<qkey>[^`]+)`|(?P<key>[\w\-./:]+))|(?P<attr>[A-Za-z_]+))"
        r"(?:\s+(?P<dir>asc|desc))?\s*",
        text,
        flags=re.IGNORECASE,
    )
    if m is None:
        raise InvalidInputError(f"cannot parse order {text!r}; write e.g. 'metrics.auc DESC'")
    descending = (m["dir"] or "asc").lower() == "desc"
    if m["attr"] is not None:
        attr = m["attr"]
        if attr not in (*ATTRIBUTES, "start_time", "end_time"):
            raise InvalidInputError(f"cannot order by {attr!r}; use start_time or metrics.KEY")
        return "attr", attr, descending
    kind = _KINDS.get(m["kind"].lower())
    if kind is None:
        raise InvalidInputError(f"unknown order prefix {m['kind']!r}; use metrics. or params.")
    key = m["qkey"] if m["qkey"] is not None else m["key"]
    return kind, key, descending  # type: ignore[return-value]
