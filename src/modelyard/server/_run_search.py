"""MLflow's run search: its filter language, ``order_by`` and pages, in one SQL query.

modelyard's own filter (``tracking/_filter.py``) is the subset people type at a prompt;
MLflow clients send the whole language: ``attributes.`` / ``params.`` / ``metrics.`` /
``tags.`` / ``datasets.`` identifiers (backquoted or double-quoted when they hold dots or
spaces), ``=`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``LIKE`` and ``ILIKE``, ``IN`` and
``NOT IN`` lists, ``IS NULL`` and ``IS NOT NULL``, clauses joined by ``AND``. Each clause
becomes an EXISTS over the (run_id, key) primary keys, and ordering by a metric walks
its value, so a search over many runs reads only the page it returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, exists, func, not_, select

from modelyard.backends.metadata import tables as t
from modelyard.server import _experiments
from modelyard.server._endpoints import V2, Call, endpoint, in_range
from modelyard.server._errors import invalid
from modelyard.server._paging import page, page_token
from modelyard.server._runs import load_runs

_PREFIXES = {
    "metric": "metrics",
    "metrics": "metrics",
    "param": "params",
    "params": "params",
    "parameter": "params",
    "parameters": "params",
    "tag": "tags",
    "tags": "tags",
    "attribute": "attributes",
    "attributes": "attributes",
    "attr": "attributes",
    "run": "attributes",
    "dataset": "datasets",
    "datasets": "datasets",
}
_ATTRIBUTES = {
    "run_id": "run_id",
    "run_name": "name",
    "status": "status",
    "user_id": "user_id",
    "start_time": "start_time",
    "end_time": "end_time",
    "created": "start_time",
    "experiment_id": "experiment_id",
}
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<str>'(?:[^']|'')*'|"(?:[^"\\]|\\.)*")
      | (?P<bq>`[^`]*`)
      | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)
      | (?P<op>!=|>=|<=|=|<|>|\(|\)|,|\.)
      | (?P<word>[A-Za-z_][\w\-:/]*)
    )""",
    re.VERBOSE,
)
_KV = {"params": t.params, "tags": t.tags, "metrics": t.latest_metrics}


@dataclass(frozen=True)
class Clause:
    kind: str  # metrics, params, tags, attributes, datasets
    key: str
    op: str  # = != < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL
    value: Any


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None:
            raise invalid(f"cannot parse the filter at {text[pos : pos + 30]!r}: {text!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


def _unquote(token: str) -> str:
    if token[0] == "'":
        return token[1:-1].replace("''", "'")
    if token[0] == '"':
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token[1:-1]  # backquotes


def parse(text: str | None) -> list[Clause]:
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    i = 0

    def need(what: str) -> tuple[str, str]:
        nonlocal i
        if i >= len(tokens):
            raise invalid(f"the filter {text!r} ends where {what} should follow")
        i += 1
        return tokens[i - 1]

    while True:
        kind, word = need("an identifier such as metrics.auc")
        if kind != "word":
            raise invalid(f"expected an identifier such as metrics.auc, got {word!r} in {text!r}")
        prefix = "attributes"
        if i < len(tokens) and tokens[i] == ("op", ".") and word.lower() in _PREFIXES:
            prefix = _PREFIXES[word.lower()]
            i += 1
            kind, word = need("a key after the prefix")
            if kind in ("bq", "str"):
                word = _unquote(word)
            elif kind != "word":
                raise invalid(f"expected a key after {prefix}., got {word!r}")
            # unquoted keys may hold dots: metrics.val.loss
            while (
                i + 1 < len(tokens)
                and tokens[i] == ("op", ".")
                and tokens[i + 1][0] in ("word", "num")
            ):
                word += "." + tokens[i + 1][1]
                i += 2
        elif "." in word:
            raise invalid(f"unknown identifier {word!r} in {text!r}")
        key = word
        if prefix == "attributes":
            if key.lower() not in _ATTRIBUTES:
                raise invalid(
                    f"Invalid attribute key '{key}' specified. Valid keys are {sorted(_ATTRIBUTES)}"
                )
            key = key.lower()
        elif prefix == "datasets" and key not in ("name", "digest", "context"):
            raise invalid(f"datasets.{key}: filter datasets by name, digest or context")
        kind, op = need("a comparison")
        op_text = op.upper()
        if kind == "word" and op_text == "NOT":
            need("IN")
            op_text = "NOT IN"
        elif kind == "word" and op_text == "IS":
            k2, w2 = need("NULL or NOT NULL")
            op_text = "IS NULL"
            if w2.upper() == "NOT":
                need("NULL")
                op_text = "IS NOT NULL"
            clauses.append(Clause(prefix, key, op_text, None))
            op_text = ""
        elif not (kind == "op" and op in ("=", "!=", "<", "<=", ">", ">=")) and op_text not in (
            "LIKE",
            "ILIKE",
            "IN",
        ):
            raise invalid(f"{op!r} is not a comparison this filter knows, in {text!r}")
        if op_text:
            value: Any
            if op_text in ("IN", "NOT IN"):
                kind, word = need("(")
                if word != "(":
                    raise invalid(f"IN takes a list in parentheses: ('a', 'b'), in {text!r}")
                value = []
                while True:
                    kind, word = need("a value")
                    if kind == "str":
                        value.append(_unquote(word))
                    elif kind == "num":
                        value.append(word)
                    else:
                        raise invalid(f"IN lists hold quoted values; got {word!r} in {text!r}")
                    kind, word = need(", or )")
                    if word == ")":
                        break
                    if word != ",":
                        raise invalid(f"expected , or ) in the IN list of {text!r}")
            else:
                kind, word = need("a value")
                if kind == "str":
                    value = _unquote(word)
                elif kind == "num":
                    value = float(word) if prefix == "metrics" else word
                else:
                    raise invalid(f"expected a quoted value or a number, got {word!r} in {text!r}")
                if prefix == "metrics" and isinstance(value, str):
                    raise invalid(f"metrics.{key} compares with a number, not {value!r}")
            clauses.append(Clause(prefix, key, op_text, value))
        if i >= len(tokens):
            return clauses
        kind, word = need("AND")
        if word.upper() != "AND":
            raise invalid(
                f"clauses are joined by AND; got {word!r} in {text!r} (OR is not supported)"
            )


def _compare(column: Any, op: str, value: Any) -> Any:
    if op == "=":
        return column == value
    if op == "!=":
        return column != value
    if op == "<":
        return column < value
    if op == "<=":
        return column <= value
    if op == ">":
        return column > value
    if op == ">=":
        return column >= value
    if op == "LIKE":
        return column.like(value)
    if op == "ILIKE":
        return func.lower(column).like(str(value).lower())
    if op == "IN":
        return column.in_(value)
    if op == "NOT IN":
        return column.not_in(value)
    raise invalid(f"{op} does not apply here")


def _attribute(clause: Clause) -> Any:
    r = t.runs.c
    if clause.key == "experiment_id":
        ids = clause.value if isinstance(clause.value, list) else [clause.value]
        names = select(t.experiments.c.name).where(
            t.experiments.c.experiment_id.in_([_experiments.experiment_id(v) for v in ids])
        )
        return (
            r.experiment.in_(names)
            if clause.op != "NOT IN" and clause.op != "!="
            else (r.experiment.not_in(names))
        )
    column = r[_ATTRIBUTES[clause.key]]
    value = clause.value
    if clause.op in ("IS NULL", "IS NOT NULL"):
        return column.is_(None) if clause.op == "IS NULL" else column.is_not(None)
    if clause.key in ("start_time", "end_time", "created"):
        try:
            value = in_range(int(float(value)) * 1000, f"attributes.{clause.key}")
        except (TypeError, ValueError):
            raise invalid(
                f"attributes.{clause.key} compares with milliseconds, not {value!r}"
            ) from None
        return _compare(column, clause.op, value)
    if clause.key == "status":
        value = [str(v).lower() for v in value] if isinstance(value, list) else str(value).lower()
        if clause.op in ("LIKE", "ILIKE"):
            return _compare(func.lower(column), "LIKE", value)
    return _compare(column, clause.op, value)


def condition(clause: Clause) -> Any:
    if clause.kind == "attributes":
        return _attribute(clause)
    if clause.kind == "datasets":
        d = t.run_datasets.c
        column = {"name": d.name, "digest": d.fingerprint, "context": d.context}[clause.key]
        return (
            exists()
            .where(d.run_id == t.runs.c.run_id, _compare(column, clause.op, clause.value))
            .correlate(t.runs)
        )
    table = _KV[clause.kind]
    has_key = and_(table.c.run_id == t.runs.c.run_id, table.c.key == clause.key)
    if clause.op == "IS NULL":
        return not_(exists().where(has_key).correlate(t.runs))
    if clause.op == "IS NOT NULL":
        return exists().where(has_key).correlate(t.runs)
    return (
        exists().where(has_key, _compare(table.c.value, clause.op, clause.value)).correlate(t.runs)
    )


_ORDER = re.compile(
    r"\s*(?:(?P<prefix>[A-Za-z]+)\.)?(?:`(?P<bq>[^`]+)`|\"(?P<dq>[^\"]+)\"|(?P<key>[\w.\-:/]+))"
    r"(?:\s+(?P<dir>ASC|DESC))?\s*",
    re.IGNORECASE,
)


def order_columns(order_by: list[Any]) -> tuple[list[Any], list[Any]]:
    """(joins, ORDER BY terms) for MLflow ``order_by`` clauses; then start time, run id."""
    joins: list[Any] = []
    terms: list[Any] = []
    for n, text in enumerate(order_by):
        m = _ORDER.fullmatch(str(text))
        if m is None:
            raise invalid(f"cannot parse order_by {text!r}; write e.g. 'metrics.auc DESC'")
        prefix = _PREFIXES.get((m["prefix"] or "attributes").lower())
        key = m["bq"] or m["dq"] or m["key"]
        descending = (m["dir"] or "ASC").upper() == "DESC"
        if prefix == "attributes":
            name = _ATTRIBUTES.get(key.lower())
            if name is None or name == "experiment_id":
                raise invalid(f"cannot order runs by attribute {key!r}")
            column = t.runs.c[name]
        elif prefix in _KV:
            table = _KV[prefix].alias(f"order_{n}")
            joins.append((table, and_(table.c.run_id == t.runs.c.run_id, table.c.key == key)))
            column = table.c.value
            terms.append(column.is_(None))  # runs without the value come last, either way
        else:
            raise invalid(f"cannot order runs by {text!r}")
        terms.append(column.desc() if descending else column.asc())
    terms += [t.runs.c.start_time.desc(), t.runs.c.run_id.asc()]
    return joins, terms


def search_ids(
    conn: Any,
    *,
    experiment_ids: list[Any],
    filter: str | None,
    view: str,
    order_by: list[Any],
    offset: int,
    limit: int,
) -> list[str]:
    r = t.runs.c
    names = select(t.experiments.c.name).where(
        t.experiments.c.experiment_id.in_([_experiments.experiment_id(e) for e in experiment_ids])
    )
    conditions = [r.experiment.in_(names), *(condition(c) for c in parse(filter))]
    view = (view or "ACTIVE_ONLY").upper()
    if view == "ACTIVE_ONLY":
        conditions.append(r.deleted_at.is_(None))
    elif view == "DELETED_ONLY":
        conditions.append(r.deleted_at.is_not(None))
    elif view != "ALL":
        raise invalid(f"run_view_type {view!r} is not ACTIVE_ONLY, DELETED_ONLY or ALL")
    if len(order_by) == 1:
        by_value = _by_one_value(conn, str(order_by[0]), conditions, offset, limit)
        if by_value is not None:
            return by_value
    joins, terms = order_columns(order_by)
    source: Any = t.runs
    for table, on in joins:
        source = source.outerjoin(table, on)
    stmt = (
        select(r.run_id)
        .select_from(source)
        .where(*conditions)
        .order_by(*terms)
        .offset(offset)
        .limit(limit)
    )
    return [row[0] for row in conn.execute(stmt)]


def _by_one_value(
    conn: Any, text: str, conditions: list[Any], offset: int, limit: int
) -> list[str] | None:
    """Runs ordered by one metric, param or tag, the way the (key, value) index reads
    them: the runs that have the value in its order, then those without it (newest
    first). One query walks the index and stops at the page's end; the second runs only
    when the page reaches past the runs that have the value. None: not such an order."""
    m = _ORDER.fullmatch(text)
    prefix = None if m is None else _PREFIXES.get((m["prefix"] or "attributes").lower())
    if m is None or prefix not in _KV:
        return None
    key = m["bq"] or m["dq"] or m["key"]
    descending = (m["dir"] or "ASC").upper() == "DESC"
    table = _KV[prefix].alias("ordering")
    value = table.c.value
    has = (table.c.key == key, value.is_not(None))
    first = (
        select(t.runs.c.run_id)
        .select_from(table.join(t.runs, table.c.run_id == t.runs.c.run_id))
        .where(*has, *conditions)
        .order_by(
            value.desc() if descending else value.asc(), t.runs.c.start_time.desc(), t.runs.c.run_id
        )
        .offset(offset)
        .limit(limit)
    )
    ids = [row[0] for row in conn.execute(first)]
    if len(ids) == limit:
        return ids
    with_value = conn.execute(
        select(func.count())
        .select_from(table.join(t.runs, table.c.run_id == t.runs.c.run_id))
        .where(*has, *conditions)
    ).scalar_one()
    lacking = not_(exists().where(table.c.run_id == t.runs.c.run_id, *has).correlate(t.runs))
    rest = (
        select(t.runs.c.run_id)
        .where(lacking, *conditions)
        .order_by(t.runs.c.start_time.desc(), t.runs.c.run_id)
        .offset(max(0, offset - with_value))
        .limit(limit - len(ids))
    )
    return ids + [row[0] for row in conn.execute(rest)]


@endpoint("POST", f"{V2}/runs/search", "read")
def search(call: Call) -> dict[str, Any]:
    args = call.args
    experiment_ids = args.items("experiment_ids")
    if not experiment_ids:
        raise invalid("search needs experiment_ids: the experiments to search in")
    limit = args.integer("max_results", 1000, low=1)
    if limit > 50_000:
        raise invalid(f"max_results {limit} is above 50000; page with page_token instead")
    offset = page_token(args.get("page_token"))
    with call.stores.metadata.read() as conn:
        ids = search_ids(
            conn,
            experiment_ids=experiment_ids,
            filter=args.text("filter", required=False),
            view=str(args.get("run_view_type", "ACTIVE_ONLY")),
            order_by=args.items("order_by"),
            offset=offset,
            limit=limit + 1,
        )
        runs = load_runs(conn, ids)
    return page("runs", runs, offset, limit)


__all__ = ["Clause", "condition", "parse", "search_ids"]
