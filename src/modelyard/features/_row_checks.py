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

The rules run as Arrow compute kernels on the pushed table rather than as SQL: a push is
often one row on a hot path, and opening a DuckDB connection for it cost more than the
whole rest of the push (about 20 ms of a 40 ms push, measured in bench/featurestore.py).
As in SQL, a null value breaks no comparison: only ``NullRate`` judges nulls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from modelyard.errors import InvalidInputError
from modelyard.features._checks import NullRate, Range, UniqueKeys

if TYPE_CHECKING:
    from modelyard.contracts import Field
    from modelyard.features._definitions import FeatureView

_ROW = "__row"


@dataclass(frozen=True)
class RowRule:
    check: str  # as backfill names it: "range(rating)", "unique_keys", "schema(rating.max)"
    column: str
    what: str  # the rule in words, for the message
    offending: Any  # (table) -> a boolean mask of the rows that break the rule


def _outside(low: float | None, high: float | None, length: bool = False) -> Any:
    def mask(column: Any) -> Any:
        values = pc.utf8_length(column) if length else column
        out = pa.array([False] * len(values))
        if low is not None:
            out = pc.or_kleene(out, pc.less(values, low))
        if high is not None:
            out = pc.or_kleene(out, pc.greater(values, high))
        return pc.fill_null(out, False)

    return mask


def _on(name: str, test: Any) -> Any:
    return lambda table: test(table[name])


def _field_rules(field: Field) -> list[RowRule]:
    rules = []
    if field.min is not None or field.max is not None:
        rules.append(
            RowRule(
                f"schema({field.name}.range)",
                field.name,
                f"declared range [{field.min}, {field.max}]",
                _on(field.name, _outside(field.min, field.max)),
            )
        )
    if field.categories is not None:
        allowed = pa.array(list(field.categories))

        def not_allowed(column: Any, allowed: Any = allowed) -> Any:
            inside = pc.is_in(column, value_set=allowed.cast(column.type))
            return pc.and_(pc.invert(inside), pc.is_valid(column))

        rules.append(
            RowRule(
                f"schema({field.name}.categories)",
                field.name,
                f"declared categories {list(field.categories)}",
                _on(field.name, not_allowed),
            )
        )
    if field.min_length is not None or field.max_length is not None:
        rules.append(
            RowRule(
                f"schema({field.name}.length)",
                field.name,
                f"declared length [{field.min_length}, {field.max_length}]",
                _on(field.name, _outside(field.min_length, field.max_length, length=True)),
            )
        )
    return rules


def _repeated(columns: list[str]) -> Any:
    """Rows whose values of ``columns`` another row of the table repeats."""

    def mask(table: pa.Table) -> Any:
        if table.num_rows < 2:
            return pa.array([False] * table.num_rows)
        numbered = table.select(columns).append_column(
            _ROW, pa.array(range(table.num_rows), pa.int64())
        )
        groups = numbered.group_by(columns, use_threads=False).aggregate([(_ROW, "list")])
        bad = [rows for rows in groups[f"{_ROW}_list"].to_pylist() if len(rows) > 1]
        out = [False] * table.num_rows
        for rows in bad:
            for row in rows:
                out[row] = True
        return pa.array(out)

    return mask


def row_rules(view: FeatureView) -> list[RowRule]:
    """Every rule of ``view`` that a single pushed row can break (see the module doc)."""
    rules = [r for f in (*view.entity.join_keys, *view.features) for r in _field_rules(f)]
    for check in view.checks:
        if isinstance(check, Range) and (check.min is not None or check.max is not None):
            rules.append(
                RowRule(
                    f"range({check.feature})",
                    check.feature,
                    f"values must lie in [{check.min}, {check.max}]",
                    _on(check.feature, _outside(check.min, check.max)),
                )
            )
        elif isinstance(check, NullRate) and check.max == 0:
            rules.append(
                RowRule(
                    f"null_rate({check.feature})",
                    check.feature,
                    "no value may be null",
                    _on(check.feature, pc.is_null),
                )
            )
        elif isinstance(check, UniqueKeys):
            cols = [*view.entity.key_names, view.source.timestamp_field]
            rules.append(
                RowRule(
                    "unique_keys",
                    view.entity.key_names[0],
                    f"another pushed row has the same {', '.join(cols)}",
                    _repeated(cols),
                )
            )
    return rules


def check_pushed_rows(view: FeatureView, table: pa.Table) -> None:
    """Raise a one-line error for the first row of ``table`` that breaks a rule of ``view``."""
    for rule in row_rules(view):
        mask = rule.offending(table)
        bad = pc.sum(mask).as_py() or 0
        if not bad:
            continue
        # Rows are counted from 0, as the other push errors count them.
        row = pc.index(mask, True).as_py()
        value = table[rule.column][row].as_py()
        raise InvalidInputError(
            f"push to feature view '{view.name}' refused by check {rule.check}: "
            f"row {row} has {rule.column} = {value!r} ({rule.what}; {bad} bad "
            f"row{'s' if bad != 1 else ''} of {table.num_rows}); nothing was written; "
            "fix the rows or the view's checks and push again"
        )
