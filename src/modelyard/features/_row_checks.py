"""The rules one pushed row can break: the view's schema and its row-level checks.

A push is judged before anything is written, so a rejected push leaves the offline and
online stores as they were. What one row can break:

- the declared constraints of each join key and feature (``min``/``max``, ``categories``,
  ``min_length``/``max_length``);
- ``Range`` checks;
- ``NullRate(max=0)`` ("never null"); a ``NullRate`` above 0 is a share of a whole
  partition, which a push of a few rows cannot judge;
- ``UniqueKeys`` within the pushed rows (a later push of the same keys and event time
  replaces the earlier one: see ``_push``).

``RowCount`` and ``Freshness`` describe a whole partition, so only backfill runs them.
Nullability is left to ``NullRate`` as in backfill: declared features are not nullable by
default, yet sources routinely hold nulls, which online reads report as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from modelyard.errors import InvalidInputError
from modelyard.features._checks import NullRate, Range, UniqueKeys
from modelyard.features._sources import literal, quote

if TYPE_CHECKING:
    from modelyard.contracts import Field
    from modelyard.features._definitions import FeatureView

_ROW = "__row"


@dataclass(frozen=True)
class RowRule:
    check: str  # as backfill names it: "range(rating)", "unique_keys", "schema(rating.max)"
    column: str
    what: str  # the rule in words, for the message
    clause: str  # SQL over ``part`` that keeps the offending rows: "WHERE …" or "QUALIFY …"


def _bounds(low: float | None, high: float | None, col: str) -> str:
    parts = []
    if low is not None:
        parts.append(f"{col} < {low!r}")
    if high is not None:
        parts.append(f"{col} > {high!r}")
    return " OR ".join(parts)


def _sql_value(value: str | int | bool) -> str:
    return literal(value) if isinstance(value, str) else repr(value).upper()


def _field_rules(field: Field) -> list[RowRule]:
    col = quote(field.name)
    rules = []
    if field.min is not None or field.max is not None:
        rules.append(
            RowRule(
                f"schema({field.name}.range)",
                field.name,
                f"declared range [{field.min}, {field.max}]",
                f"WHERE {_bounds(field.min, field.max, col)}",
            )
        )
    if field.categories is not None:
        allowed = ", ".join(_sql_value(c) for c in field.categories)
        rules.append(
            RowRule(
                f"schema({field.name}.categories)",
                field.name,
                f"declared categories {list(field.categories)}",
                f"WHERE {col} NOT IN ({allowed})",
            )
        )
    if field.min_length is not None or field.max_length is not None:
        rules.append(
            RowRule(
                f"schema({field.name}.length)",
                field.name,
                f"declared length [{field.min_length}, {field.max_length}]",
                f"WHERE {_bounds(field.min_length, field.max_length, f'length({col})')}",
            )
        )
    return rules


def row_rules(view: FeatureView) -> list[RowRule]:
    """Every rule of ``view`` that a single pushed row can break (see the module doc)."""
    rules = [r for f in (*view.entity.join_keys, *view.features) for r in _field_rules(f)]
    for check in view.checks:
        if isinstance(check, Range) and (check.min is not None or check.max is not None):
            col = quote(check.feature)
            rules.append(
                RowRule(
                    f"range({check.feature})",
                    check.feature,
                    f"values must lie in [{check.min}, {check.max}]",
                    f"WHERE {_bounds(check.min, check.max, col)}",
                )
            )
        elif isinstance(check, NullRate) and check.max == 0:
            rules.append(
                RowRule(
                    f"null_rate({check.feature})",
                    check.feature,
                    "no value may be null",
                    f"WHERE {quote(check.feature)} IS NULL",
                )
            )
        elif isinstance(check, UniqueKeys):
            cols = [*view.entity.key_names, view.source.timestamp_field]
            rules.append(
                RowRule(
                    "unique_keys",
                    view.entity.key_names[0],
                    f"another pushed row has the same {', '.join(cols)}",
                    f"QUALIFY count(*) OVER (PARTITION BY {', '.join(quote(c) for c in cols)}) > 1",
                )
            )
    return rules


def check_pushed_rows(view: FeatureView, table: pa.Table) -> None:
    """Raise a one-line error for the first row of ``table`` that breaks a rule of ``view``."""
    rules = row_rules(view)
    if not rules:
        return
    # Rows are counted from 0, as the other push errors count them.
    numbered = table.append_column(_ROW, pa.array(range(table.num_rows), pa.int64()))
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.register("part", numbered)
        for rule in rules:
            found: Any = con.execute(
                f"SELECT {_ROW}, {quote(rule.column)}, count(*) OVER () "
                f"FROM (SELECT * FROM part {rule.clause}) ORDER BY {_ROW} LIMIT 1"
            ).fetchone()
            if found is not None:
                row, value, bad = found
                raise InvalidInputError(
                    f"push to feature view '{view.name}' refused by check {rule.check}: "
                    f"row {row} has {rule.column} = {value!r} ({rule.what}; {bad} bad "
                    f"row{'s' if bad != 1 else ''} of {table.num_rows}); nothing was written; "
                    "fix the rows or the view's checks and push again"
                )
    finally:
        con.close()
